package plugipay

import (
	"errors"
	"testing"
	"unicode/utf8"
)

// FuzzDecodeEnvelope feeds arbitrary bodies and statuses to the envelope
// decoder: it never panics, an error status always yields an *Error with a
// code, kind and message, and a success carries an envelope.
func FuzzDecodeEnvelope(f *testing.F) {
	for _, s := range []struct {
		status int
		body   string
	}{
		{200, `{"data":{"id":"cus_1"},"meta":{"requestId":"req_1"}}`},
		{200, `{"data":null,"error":{"code":"internal_error","message":"boom"}}`},
		{401, `{"error":{"code":"invalid_signature","message":"bad"},"meta":{"requestId":"req_2"}}`},
		{403, `{"error":{"code":"forbidden"}}`},
		{502, "<html><body><h1>502 Bad Gateway</h1></body></html>"},
		{200, "not json"},
		{429, `{"error":{}}`},
		{500, ``},
		{200, `{"data":[1,2,3],"meta":{"requestId":12}}`},
		{0, `null`},
		{-1, `{"error":null}`},
		{999, "\xff\xfe"},
	} {
		f.Add(s.status, []byte(s.body))
	}
	f.Fuzz(func(t *testing.T, status int, body []byte) {
		env, e := decodeEnvelope(status, body)
		if e == nil {
			if env == nil {
				t.Fatal("no envelope and no error")
			}
			if status >= 400 {
				t.Fatalf("status %d decoded without an error", status)
			}
			return
		}
		if e.Code == "" || e.Err == nil || e.Message == "" {
			t.Fatalf("incomplete error: %#v", e)
		}
		if e.StatusCode != status {
			t.Fatalf("StatusCode %d, want %d", e.StatusCode, status)
		}
		var pe *Error
		if !errors.As(error(e), &pe) {
			t.Fatal("not an *Error through errors.As")
		}
		_ = e.Error()
		if utf8.ValidString(string(body)) && !utf8.ValidString(e.Message) {
			t.Fatalf("message of a UTF-8 body is not UTF-8: %q", e.Message)
		}
	})
}

// TestDecodeEnvelope_ErrorWithoutMessage is the regression test for what
// FuzzDecodeEnvelope found: an error object without a message, in a
// response whose status has no text (or a success status, whose text "OK"
// would mislead), gave an *Error with an empty or wrong message.
func TestDecodeEnvelope_ErrorWithoutMessage(t *testing.T) {
	for _, tt := range []struct {
		status int
		want   string
	}{
		{164, "HTTP 164 response carries an error without a message"},
		{200, "HTTP 200 response carries an error without a message"},
		{0, "HTTP 0 response carries an error without a message"},
		{503, "Service Unavailable"},
		{599, "HTTP 599 response carries an error without a message"},
	} {
		_, e := decodeEnvelope(tt.status, []byte(`{"error":{}}`))
		if e == nil || e.Message != tt.want {
			t.Errorf("status %d: got %#v, want message %q", tt.status, e, tt.want)
		}
	}
}
