package main

import (
	"bytes"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestDemo runs what `make demo` runs, on freshly built binaries, so the
// README's first command keeps working.
func TestDemo(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs both binaries; skipped with -short")
	}
	bin := t.TempDir()
	build := exec.Command("go", "build", "-o", bin+"/", "../plugipay-sync", "../plugipay-mock")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	var out bytes.Buffer
	err := run([]string{
		"--mock", filepath.Join(bin, "plugipay-mock"),
		"--sync", filepath.Join(bin, "plugipay-sync"),
		"--config", "../../config.example.yaml",
		"--csv", "../../crm/testdata/sample_users.csv",
		"--dir", t.TempDir(),
	}, &out)
	if err != nil {
		t.Fatalf("demo: %v\n%s", err, out.String())
	}
	for _, want := range []string{
		"read 1200  created 1195  updated 0  unchanged 0  recovered 0  rejected 5  failed 0",
		"read 1200  created 0  updated 0  unchanged 1195  recovered 0  rejected 5  failed 0",
		"read 1200  created 0  updated 1  unchanged 1194  recovered 0  rejected 5  failed 0",
		"read 1203  created 1  updated 0  unchanged 1195  recovered 2  rejected 5  failed 0",
		"All checks passed.",
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("demo output lacks %q", want)
		}
	}
	if strings.Contains(out.String(), "✗") {
		t.Errorf("a demo check failed:\n%s", out.String())
	}
}
