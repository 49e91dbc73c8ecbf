package main

import (
	"os"
	"path/filepath"
)

// spillDir is where a run keeps its temporary files (what the plan phase
// read, the writes it plans): the state DB's directory, a writable volume
// also where the root filesystem is read-only (deploy/kubernetes), or the
// system's temporary directory when it does not exist yet (a dry run
// before the first run).
func spillDir(statePath string) string {
	dir := filepath.Dir(statePath)
	if fi, err := os.Stat(dir); err == nil && fi.IsDir() {
		return dir
	}
	return ""
}
