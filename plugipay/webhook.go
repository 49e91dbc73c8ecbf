package plugipay

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Webhooks: Plugipay signs each delivery with the endpoint's secret in
// X-Plugipay-Signature: t=<unix>,v1=<hex HMAC-SHA256(secret, t + "." +
// raw body)>. A receiver verifies the signature over the raw body before
// parsing it, refuses a timestamp more than DefaultWebhookTolerance away
// from its clock (a replayed delivery), and compares in constant time.
const (
	HeaderSignature = "X-Plugipay-Signature"
	// DefaultWebhookTolerance is the largest accepted difference between
	// the delivery's timestamp and the receiver's clock.
	DefaultWebhookTolerance = 300 * time.Second
)

// Customer event types.
const (
	EventCustomerCreated = "plugipay.customer.created.v1"
	EventCustomerUpdated = "plugipay.customer.updated.v1"
	EventCustomerDeleted = "plugipay.customer.deleted.v1"
)

// Webhook verification failures; VerifyWebhook's errors wrap one of them.
var (
	// ErrWebhookSignature: the header is missing or malformed, or no v1
	// signature matches (a forged or altered delivery, or the wrong
	// secret).
	ErrWebhookSignature = errors.New("plugipay: webhook signature does not match")
	// ErrWebhookTimestamp: the signed timestamp is outside the tolerance
	// (a replayed or delayed delivery, or a skewed clock).
	ErrWebhookTimestamp = errors.New("plugipay: webhook timestamp outside the tolerance")
)

// SignWebhook returns the X-Plugipay-Signature value of payload sent at
// unix time t (the emulator and tests sign with it).
func SignWebhook(secret string, t int64, payload []byte) string {
	return "t=" + strconv.FormatInt(t, 10) + ",v1=" + webhookMAC(secret, t, payload)
}

func webhookMAC(secret string, t int64, payload []byte) string {
	m := hmac.New(sha256.New, []byte(secret))
	m.Write([]byte(strconv.FormatInt(t, 10)))
	m.Write([]byte("."))
	m.Write(payload)
	return hex.EncodeToString(m.Sum(nil))
}

// VerifyWebhook checks header, the X-Plugipay-Signature of payload (the
// raw request body, unparsed), against secret at time now, allowing
// tolerance of clock difference (0 means DefaultWebhookTolerance). Any of
// several v1 signatures may match (the secret being rotated). The compare
// is constant-time.
func VerifyWebhook(payload []byte, header, secret string, now time.Time, tolerance time.Duration) error {
	if tolerance <= 0 {
		tolerance = DefaultWebhookTolerance
	}
	if secret == "" {
		return fmt.Errorf("%w: no endpoint secret configured", ErrWebhookSignature)
	}
	var (
		ts   int64
		seen bool
		sigs [][]byte
	)
	for part := range strings.SplitSeq(header, ",") {
		k, v, ok := strings.Cut(strings.TrimSpace(part), "=")
		if !ok {
			continue
		}
		switch k {
		case "t":
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil {
				return fmt.Errorf("%w: malformed timestamp", ErrWebhookSignature)
			}
			ts, seen = n, true
		case "v1":
			if b, err := hex.DecodeString(v); err == nil {
				sigs = append(sigs, b)
			}
		}
	}
	if !seen || len(sigs) == 0 {
		return fmt.Errorf("%w: header has no t= and v1=", ErrWebhookSignature)
	}
	want, _ := hex.DecodeString(webhookMAC(secret, ts, payload))
	match := false
	for _, s := range sigs {
		if hmac.Equal(s, want) {
			match = true
		}
	}
	if !match {
		return ErrWebhookSignature
	}
	if d := now.Sub(time.Unix(ts, 0)); d > tolerance || d < -tolerance {
		return fmt.Errorf("%w: signed %s from now", ErrWebhookTimestamp, d.Round(time.Second))
	}
	return nil
}

// WebhookEvent is a delivered event.
type WebhookEvent struct {
	ID         string `json:"id"`
	Type       string `json:"type"`
	AccountID  string `json:"accountId,omitempty"`
	OccurredAt string `json:"occurredAt,omitempty"`
	Data       struct {
		Object json.RawMessage `json:"object"`
	} `json:"data"`
}

// Customer decodes the event's object as a customer (customer events).
func (e *WebhookEvent) Customer() (*Customer, error) {
	var c Customer
	if err := json.Unmarshal(e.Data.Object, &c); err != nil {
		return nil, fmt.Errorf("plugipay: webhook %s: decode customer: %w", e.ID, err)
	}
	return &c, nil
}

// ParseWebhook verifies payload's signature (see VerifyWebhook) and only
// then decodes the event.
func ParseWebhook(payload []byte, header, secret string, now time.Time, tolerance time.Duration) (*WebhookEvent, error) {
	if err := VerifyWebhook(payload, header, secret, now, tolerance); err != nil {
		return nil, err
	}
	var e WebhookEvent
	if err := json.Unmarshal(payload, &e); err != nil {
		return nil, fmt.Errorf("plugipay: webhook: decode event: %w", err)
	}
	if e.ID == "" || e.Type == "" {
		return nil, errors.New("plugipay: webhook: event has no id or type")
	}
	return &e, nil
}
