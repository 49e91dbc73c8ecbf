package main

import (
	"errors"
	"fmt"
	"os"
	"regexp"
	"strings"

	"go.yaml.in/yaml/v3"
)

// envRef is a ${VAR} or ${VAR:-default} reference.
var envRef = regexp.MustCompile(`\$\{([A-Za-z_][A-Za-z0-9_]*)(:-([^}]*))?\}`)

// ExpandEnv replaces ${VAR} and ${VAR:-default} in the config's values,
// after the YAML is parsed and in each scalar value on its own, never in
// the raw text: a secret holding "#", ": ", a leading "*" or a quote used
// to truncate itself or break the file when pasted into the text (issue
// 16: `sk_live_ab #cd` passed check-config, then every call failed
// invalid_signature). A VAR that is unset or empty falls back to the
// contents of the file VAR_FILE names (Docker and Kubernetes secrets), then
// to the default; with neither it is an error naming it. "$${" is a literal
// "${". A plain (unquoted) value is retyped from what it expands to, so
// `port: ${PORT}` is a number; a quoted one stays a string. Comments are
// left alone. Input that is not YAML is returned as it is, for
// ParseConfig to report.
func ExpandEnv(b []byte, lookupEnv func(string) (string, bool)) ([]byte, error) {
	var doc yaml.Node
	if err := yaml.Unmarshal(b, &doc); err != nil || doc.Kind == 0 {
		return b, nil
	}
	changed := false
	var walk func(n *yaml.Node) error
	walk = func(n *yaml.Node) error {
		switch n.Kind {
		case yaml.ScalarNode:
			v, err := expandValue(n.Value, lookupEnv)
			if err != nil {
				return err
			}
			if v != n.Value {
				n.Value, changed = v, true
				if n.Style == 0 {
					n.Tag = "" // resolve the expanded text afresh
				}
			}
		case yaml.MappingNode:
			for i := 1; i < len(n.Content); i += 2 { // values, not keys
				if err := walk(n.Content[i]); err != nil {
					return err
				}
			}
		case yaml.DocumentNode, yaml.SequenceNode:
			for _, c := range n.Content {
				if err := walk(c); err != nil {
					return err
				}
			}
		}
		return nil // an alias points at a node walked where it is anchored
	}
	if err := walk(&doc); err != nil {
		return nil, err
	}
	if !changed {
		return b, nil
	}
	out, err := yaml.Marshal(&doc)
	if err != nil {
		return nil, fmt.Errorf("expand environment variables: %w", err)
	}
	return out, nil
}

// expandValue expands the references in one scalar value.
func expandValue(s string, lookupEnv func(string) (string, bool)) (string, error) {
	if !strings.Contains(s, "${") {
		return s, nil
	}
	const escaped = "\x00escaped-dollar\x00"
	s = strings.ReplaceAll(s, "$${", escaped)
	var firstErr error
	s = envRef.ReplaceAllStringFunc(s, func(ref string) string {
		m := envRef.FindStringSubmatch(ref)
		v, ok, err := resolveEnv(lookupEnv, m[1])
		switch {
		case err != nil:
			firstErr = cmpErr(firstErr, err)
		case ok:
			return v
		case m[2] != "":
			return m[3]
		default:
			firstErr = cmpErr(firstErr, fmt.Errorf("environment variable %s is not set (referenced as ${%s}); export it (or %s_FILE naming a file that holds it) or give a default as ${%s:-value}",
				m[1], m[1], m[1], m[1]))
		}
		return ""
	})
	if firstErr != nil {
		return "", firstErr
	}
	return strings.ReplaceAll(s, escaped, "${"), nil
}

func cmpErr(first, err error) error {
	if first != nil {
		return first
	}
	return err
}

// resolveEnv returns the value of the variable name: its value when set
// and not empty, else the contents of the file name_FILE names (one final
// newline removed, as editors and `echo` add one). ok is false when
// neither is there; an unreadable file is an error naming the variable,
// never the contents.
func resolveEnv(lookupEnv func(string) (string, bool), name string) (string, bool, error) {
	if v, ok := lookupEnv(name); ok && v != "" {
		return v, true, nil
	}
	path, ok := lookupEnv(name + "_FILE")
	if !ok || path == "" {
		return "", false, nil
	}
	b, err := os.ReadFile(path)
	if err != nil {
		var pe *os.PathError
		if errors.As(err, &pe) {
			err = pe.Err
		}
		return "", false, fmt.Errorf("%s_FILE: cannot read %s: %v", name, path, err)
	}
	v := strings.TrimSuffix(strings.TrimSuffix(string(b), "\n"), "\r")
	return v, true, nil
}
