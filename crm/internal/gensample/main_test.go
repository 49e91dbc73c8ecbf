package main

import (
	"bytes"
	"os"
	"testing"
)

// TestGenerate_MatchesTestdata fails when the generator and the checked-in
// sample disagree: regenerate with
// go run ./crm/internal/gensample > crm/testdata/sample_users.csv.
func TestGenerate_MatchesTestdata(t *testing.T) {
	var got bytes.Buffer
	if err := generate(&got); err != nil {
		t.Fatal(err)
	}
	want, err := os.ReadFile("../../testdata/sample_users.csv")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got.Bytes(), want) {
		t.Error("crm/testdata/sample_users.csv is not the generator's output; regenerate it")
	}
}
