package main

import (
	"bytes"
	"debug/elf"
	"fmt"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/plugipay-sync/plugipay-sync/plugipay/emulator"
)

// TestStaticBinary builds the daemon exactly as the Dockerfile does
// (`make static`, the one place the flags live), proves it is fully static,
// and runs --version and a --once sync inside an empty root holding only
// the binary, the CA bundle, its config and the CSV: what the distroless
// image gives it.
func TestStaticBinary(t *testing.T) {
	if testing.Short() {
		t.Skip("builds a static binary; skipped with -short")
	}
	if _, err := exec.LookPath("make"); err != nil {
		t.Fatal("make is needed to build the static binary as the Dockerfile does")
	}
	root := t.TempDir()
	bin := filepath.Join(root, "plugipay-sync")
	build := exec.Command("make", "-s", "-C", "../..", "static", "STATIC_OUT="+bin, "VERSION=static-test")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("make static: %v\n%s", err, out)
	}

	f, err := elf.Open(bin)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			t.Fatal("the binary has an ELF interpreter: it is dynamically linked")
		}
	}
	if libs, _ := f.ImportedLibraries(); len(libs) > 0 {
		t.Fatalf("the binary needs shared libraries: %v", libs)
	}

	out, err := exec.Command(bin, "--version").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "plugipay-sync static-test") {
		t.Fatalf("--version: %v: %s", err, out)
	}

	if os.Geteuid() != 0 {
		if os.Getenv("CI") == "true" {
			t.Fatal("CI must run as root to test the binary in an empty root (chroot)")
		}
		t.Skip("running the binary in an empty root needs root (chroot)")
	}
	emu := emulator.New(emulator.Options{Keys: map[string]string{testKeyID: testSecret}})
	srv := httptest.NewServer(emu)
	defer srv.Close()
	writeUsers(t, filepath.Join(root, "users.csv"), 40)
	// The image's CA bundle, as distroless ships it.
	const caFile = "/etc/ssl/certs/ca-certificates.crt"
	ca, err := os.ReadFile(caFile)
	if err != nil {
		t.Fatalf("CA bundle: %v (install ca-certificates)", err)
	}
	if err := os.MkdirAll(filepath.Join(root, filepath.Dir(caFile)), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, caFile), ca, 0o644); err != nil {
		t.Fatal(err)
	}
	cfg := fmt.Sprintf(`state: {path: /data/state.db}
plugipay: {base_url: %s, key_id: %s, secret: "${TEST_SECRET}"}
crm:
  csv: {path: /users.csv, columns: {external_id: id, email: email, name: full_name}}
`, srv.URL, testKeyID)
	if err := os.WriteFile(filepath.Join(root, "config.yaml"), []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("/plugipay-sync", "--once", "--config", "/config.yaml")
	cmd.Path = "/plugipay-sync"
	cmd.Env = []string{"TEST_SECRET=" + testSecret}
	cmd.SysProcAttr = &syscall.SysProcAttr{Chroot: root}
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("--once in an empty root: %v\n%s\n%s", err, stdout.String(), stderr.String())
	}
	if !strings.Contains(stdout.String(), "created 40") || emu.CustomerCount() != 40 {
		t.Fatalf("--once in an empty root created %d customers:\n%s", emu.CustomerCount(), stdout.String())
	}
	fi, err := os.Stat(filepath.Join(root, "data", "state.db"))
	if err != nil {
		t.Fatalf("state DB in the empty root: %v", err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Fatalf("state DB mode %v, want 0600", fi.Mode().Perm())
	}
}
