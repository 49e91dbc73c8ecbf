package main

import (
	"os"
	"regexp"
	"strings"
)

// secretVarName matches the names of environment variables that hold
// secrets by convention; secretKey the config keys whose values are
// secrets (plugipay.secret, crm.hubspot.token, a database DSN).
var (
	secretVarName = regexp.MustCompile(`(?i)secret|passw|token|credential|private|api_?key`)
	secretKey     = regexp.MustCompile(`(?i)secret|passw|token|credential|private|api_?key|dsn`)
)

// redactedConfigError is a config error with the secrets cut out of its
// text; Unwrap still reaches the original for errors.Is and errors.As.
type redactedConfigError struct {
	msg string
	err error
}

func (e *redactedConfigError) Error() string { return e.msg }
func (e *redactedConfigError) Unwrap() error { return e.err }

// redactConfigSecrets removes secret values from a config error's text.
// A secret referenced by mistake in another key (schedule: ${PLUGIPAY_SECRET},
// a misindented secret: line) would otherwise be quoted back by the YAML
// decoder or by Validate's (got "...") into the terminal and the logs. The
// secrets are the literal values of secret keys (secret:, secret_key:,
// token:, dsn:), the values of the ${VAR} references on their lines or
// with secret-like names, and of the *_SECRET* fallback variables. Found by FuzzConfig
// (issue 8).
func redactConfigSecrets(err error, path string, lookupEnv func(string) (string, bool)) error {
	if err == nil || lookupEnv == nil {
		return err
	}
	var secrets []string
	add := func(name string) {
		if v, ok := lookupEnv(name); ok && len(v) >= 4 {
			secrets = append(secrets, v)
		}
	}
	for _, name := range []string{"PLUGIPAY_SECRET", "PAYGATE_SECRET_KEY", "PIN_SECRET_KEY", "HUBSPOT_TOKEN",
		"PLUGIPAY_SYNC_TRIGGER_TOKEN", "HUBSPOT_CLIENT_SECRET"} {
		add(name)
	}
	raw, _ := os.ReadFile(path)
	for _, line := range strings.Split(string(raw), "\n") {
		key, value, _ := strings.Cut(strings.TrimSpace(line), ":")
		onSecretKey := secretKey.MatchString(key)
		if v := literalValue(value); onSecretKey && v != "" && !strings.Contains(v, "${") {
			secrets = append(secrets, v) // a secret written into the file itself
		}
		for _, m := range envRef.FindAllStringSubmatch(line, -1) {
			if onSecretKey || secretVarName.MatchString(m[1]) {
				add(m[1])
			}
		}
	}
	msg := err.Error()
	redacted := msg
	for _, s := range secrets {
		redacted = strings.ReplaceAll(redacted, s, "[redacted]")
	}
	if redacted == msg {
		return err
	}
	return &redactedConfigError{msg: redacted, err: err}
}

// literalValue is a YAML scalar as written after "key:", without a
// trailing comment and quotes; values shorter than 4 characters are not
// worth redacting (they would blank out unrelated text).
func literalValue(v string) string {
	v = strings.TrimSpace(v)
	if i := strings.Index(v, " #"); i >= 0 {
		v = strings.TrimSpace(v[:i])
	}
	v = strings.Trim(v, `"'`)
	if len(v) < 4 {
		return ""
	}
	return v
}
