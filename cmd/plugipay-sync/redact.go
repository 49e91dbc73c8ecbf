package main

import (
	"regexp"
	"strings"

	"go.uber.org/zap/zapcore"
)

// Personal data in log text: email addresses anywhere, and phone numbers
// written the way CRMs hold them (a leading + or 0, then at least eight
// digits with spaces, dashes, dots or brackets between).
var (
	emailPattern = regexp.MustCompile(`[A-Za-z0-9._%+\-]+@[A-Za-z0-9.\-]+\.[A-Za-z]{2,}`)
	phonePattern = regexp.MustCompile(`(?:\+|\b0)\d(?:[\s\-.()]*\d){7,}`)
)

// redactPII masks email addresses (the local part: b***@gmail.com) and
// phone numbers (all but the last two digits) in s.
func redactPII(s string) string {
	if !strings.ContainsAny(s, "@+0") {
		return s
	}
	s = emailPattern.ReplaceAllStringFunc(s, func(email string) string {
		local, domain, _ := strings.Cut(email, "@")
		return local[:1] + "***@" + domain
	})
	return phonePattern.ReplaceAllStringFunc(s, func(phone string) string {
		return phone[:1] + "***" + phone[len(phone)-2:]
	})
}

// redactCore masks personal data in the message and the string and error
// fields of every entry before the wrapped core encodes it. Logs go to
// shared pipelines; the CRM's emails and phones should not (--log-pii
// turns this off for debugging).
type redactCore struct{ zapcore.Core }

func (c redactCore) With(fields []zapcore.Field) zapcore.Core {
	return redactCore{c.Core.With(redactFields(fields))}
}

func (c redactCore) Check(e zapcore.Entry, ce *zapcore.CheckedEntry) *zapcore.CheckedEntry {
	if c.Enabled(e.Level) {
		return ce.AddCore(e, c)
	}
	return ce
}

func (c redactCore) Write(e zapcore.Entry, fields []zapcore.Field) error {
	e.Message = redactPII(e.Message)
	return c.Core.Write(e, redactFields(fields))
}

func redactFields(fields []zapcore.Field) []zapcore.Field {
	out := make([]zapcore.Field, len(fields))
	for i, f := range fields {
		switch f.Type {
		case zapcore.StringType:
			f.String = redactPII(f.String)
		case zapcore.ErrorType:
			if err, ok := f.Interface.(error); ok && err != nil {
				f = zapcore.Field{Key: f.Key, Type: zapcore.StringType, String: redactPII(err.Error())}
			}
		}
		out[i] = f
	}
	return out
}
