package main

import (
	"bytes"
	"path/filepath"
	"strings"
	"testing"
)

// TestHelpOnStdout: `--help | less` shows the usage; a usage error goes to
// stderr with a non-zero exit.
func TestHelpOnStdout(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--help"}, "Flags of the daemon and --once:"},
		{[]string{"-h"}, "-wait-lock"},
		{[]string{"status", "--help"}, "Usage: plugipay-sync status"},
		{[]string{"sync", "--help"}, "-external-id"},
		{[]string{"rebuild-cache", "--help"}, "-rebind"},
		{[]string{"retry", "--help"}, "Usage: plugipay-sync retry"},
		{[]string{"check-config", "--help"}, "-config"},
	} {
		var out, errOut bytes.Buffer
		code := run(tc.args, &out, &errOut)
		if code != ExitOK || !strings.Contains(out.String(), tc.want) || errOut.Len() != 0 {
			t.Errorf("%v: exit %d, stdout has %q: %v, stderr %q", tc.args, code, tc.want, strings.Contains(out.String(), tc.want), errOut.String())
		}
	}
	var out, errOut bytes.Buffer
	if code := run([]string{"--bogus"}, &out, &errOut); code == ExitOK || out.Len() != 0 || !strings.Contains(errOut.String(), "flag provided but not defined") {
		t.Errorf("--bogus: exit %d, stdout %q, stderr %q", code, out.String(), errOut.String())
	}
}

// TestMissingConfigNamesTheFlag: the first thing a new user meets.
func TestMissingConfigNamesTheFlag(t *testing.T) {
	var out, errOut bytes.Buffer
	code := run([]string{"--config", filepath.Join(t.TempDir(), "nope.yaml"), "--once"}, &out, &errOut)
	if code != ExitConfig || !strings.Contains(errOut.String(), "--config FILE") || !strings.Contains(errOut.String(), "config.example.yaml") {
		t.Errorf("exit %d, stderr %q", code, errOut.String())
	}
}
