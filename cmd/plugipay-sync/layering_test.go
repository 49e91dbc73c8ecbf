package main

import (
	"go/parser"
	"go/token"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// TestLayering checks the import graph the design promises (issue 16): the
// reconciler imports nothing of the module; the shared transport
// (internal/transport, with the one set of API metrics its hook feeds)
// imports nothing of the module; the Plugipay SDK, usable on its own,
// imports only the transport; the REST layer of PayGate and Pin likewise;
// no transport imports the reconciler (adapters map the transport's errors
// to their kinds with a table: plugipay.Error, destination/internal/apierr,
// hubspot.Error).
func TestLayering(t *testing.T) {
	const module = "github.com/plugipay-sync/plugipay-sync/"
	for _, tc := range []struct {
		dir     string
		allowed []string // module packages it may import
	}{
		{"sync", nil},
		{"internal/transport", nil},
		{"plugipay", []string{"internal/transport"}},
		{"destination/internal/rest", []string{"internal/transport"}},
	} {
		t.Run(tc.dir, func(t *testing.T) {
			files, err := filepath.Glob(filepath.Join("../..", tc.dir, "*.go"))
			if err != nil || len(files) == 0 {
				t.Fatalf("no files in %s: %v", tc.dir, err)
			}
			for _, f := range files {
				if strings.HasSuffix(f, "_test.go") {
					continue
				}
				parsed, err := parser.ParseFile(token.NewFileSet(), f, nil, parser.ImportsOnly)
				if err != nil {
					t.Fatal(err)
				}
				for _, imp := range parsed.Imports {
					path, _ := strconv.Unquote(imp.Path.Value)
					if rel, ok := strings.CutPrefix(path, module); ok && !slices.Contains(tc.allowed, rel) {
						t.Errorf("%s imports %s; %s may import only %v of the module", f, path, tc.dir, tc.allowed)
					}
				}
			}
		})
	}
}
