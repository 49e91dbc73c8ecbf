package main

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

// binDir holds the binaries buildBinaries builds; TestMain removes it.
var binDir string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "plugipay-demo-test-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binDir = dir
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// buildBinaries builds plugipay-sync and plugipay-mock once for the tests
// of this package and returns their directory.
var buildBinaries = sync.OnceValues(func() (string, error) {
	bin := binDir
	build := exec.Command("go", "build", "-o", bin+"/", "../plugipay-sync", "../plugipay-mock")
	if out, err := build.CombinedOutput(); err != nil {
		return "", &buildError{err: err, out: out}
	}
	return bin, nil
})

type buildError struct {
	err error
	out []byte
}

func (e *buildError) Error() string { return "go build: " + e.err.Error() + "\n" + string(e.out) }

// runDemo runs what `make demo` (with destination "" or plugipay), `make
// demo-paygate` or `make demo-pin` runs, on freshly built binaries, and
// checks the output has every wanted line and no failed check.
func runDemo(t *testing.T, destination string, want []string) {
	t.Helper()
	if testing.Short() {
		t.Skip("builds and runs both binaries; skipped with -short")
	}
	bin, err := buildBinaries()
	if err != nil {
		t.Fatal(err)
	}
	args := []string{
		"--mock", filepath.Join(bin, "plugipay-mock"),
		"--sync", filepath.Join(bin, "plugipay-sync"),
		"--config", "../../config.example.yaml",
		"--csv", "../../crm/testdata/sample_users.csv",
		"--dir", t.TempDir(),
	}
	if destination != "" {
		args = append(args, "--destination", destination)
	}
	var out bytes.Buffer
	if err := run(args, &out); err != nil {
		t.Fatalf("demo: %v\n%s", err, out.String())
	}
	for _, w := range append(want, "All checks passed.") {
		if !strings.Contains(out.String(), w) {
			t.Errorf("demo output lacks %q", w)
		}
	}
	if strings.Contains(out.String(), "✗") {
		t.Errorf("a demo check failed:\n%s", out.String())
	}
}

// TestDemo runs what `make demo` runs, on freshly built binaries, so the
// README's first command keeps working.
func TestDemo(t *testing.T) {
	runDemo(t, "", []string{
		"read 1200  created 1195  updated 0  unchanged 0  recovered 0  rejected 5  failed 0",
		"read 1200  created 0  updated 0  unchanged 1195  recovered 0  rejected 5  failed 0",
		"read 1200  created 0  updated 1  unchanged 1194  recovered 0  rejected 5  failed 0",
		"read 1203  created 1  updated 0  unchanged 1195  recovered 2  rejected 5  failed 0",
	})
}

// TestDemo_PayGate runs what `make demo-paygate` runs.
func TestDemo_PayGate(t *testing.T) {
	runDemo(t, destPayGate, []string{
		"PLUGIPAY_SYNC_DESTINATION=paygate",
		"read 1200  created 1195  updated 0  unchanged 0  recovered 0  rejected 5  failed 0",
		"read 1200  created 0  updated 0  unchanged 1195  recovered 0  rejected 5  failed 0",
		"== Pass 3: state DB deleted",
		"fake: 1195 customers; this pass sent 0 creates (POST) and 0 updates (PATCH)",
	})
}

// TestDemo_Pin runs what `make demo-pin` runs.
func TestDemo_Pin(t *testing.T) {
	runDemo(t, destPin, []string{
		"PLUGIPAY_SYNC_DESTINATION=pin",
		"listed 302 customers  linked 298  already linked 0",
		"ambiguous 2",
		"exit code 2: ambiguous emails were listed and left unlinked",
		"read 1200  created 0  updated 20  unchanged 278  recovered 0  rejected 5  failed 0",
		"read 1200  created 0  updated 0  unchanged 298  recovered 0  rejected 5  failed 0",
		"fake: 302 customers; this pass sent 20 updates (PUT) and 0 creates (POST)",
	})
}

func TestRun_BadDestination(t *testing.T) {
	var out bytes.Buffer
	err := run([]string{"--destination", "stripe", "--dir", t.TempDir()}, &out)
	if err == nil || !strings.Contains(err.Error(), "--destination") {
		t.Fatalf("err = %v", err)
	}
}
