package main

import (
	"os"
	"path/filepath"
)

// spillDir is where a run keeps its temporary files (what the plan phase
// read, the writes it plans): the state DB's directory, a writable volume
// also where the root filesystem is read-only (deploy/kubernetes), or the
// system's temporary directory when it does not exist yet (a dry run
// before the first run) or the state is in PostgreSQL.
func spillDir(st StateConfig) string {
	if st.Postgres() {
		return ""
	}
	dir := filepath.Dir(st.Path)
	if fi, err := os.Stat(dir); err == nil && fi.IsDir() {
		return dir
	}
	return ""
}
