package hubspot

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"strconv"
	"strings"
	stdsync "sync"
	"time"
)

// Webhook request headers (signature v3).
const (
	HeaderSignatureV3 = "X-HubSpot-Signature-v3"
	HeaderTimestamp   = "X-HubSpot-Request-Timestamp"
)

// WebhookMaxAge is how far a request's timestamp may be from the clock.
const WebhookMaxAge = 5 * time.Minute

// Reasons a webhook request is refused. The caller answers 401 for each
// without saying which.
var (
	ErrWebhookSignature = errors.New("hubspot webhook: missing or wrong v3 signature")
	ErrWebhookStale     = errors.New("hubspot webhook: timestamp outside the 5-minute window")
	ErrWebhookReplay    = errors.New("hubspot webhook: request seen before")
)

// WebhookVerifier checks HubSpot's v3 request signature: the base64 of
// HMAC-SHA256, keyed with the app's client secret, over method + URI +
// body + timestamp, with the URI's %3A %2F %3F %40 %21 %24 %27 %28 %29
// %2A %2C %3B decoded; a timestamp more than 5 minutes from the clock is
// refused, and so is a signature seen before within the window (a
// replay: HubSpot's own retries carry a new timestamp and signature).
// Safe for concurrent use.
type WebhookVerifier struct {
	Secret string
	// Now is the clock; tests fix it.
	Now func() time.Time

	mu   stdsync.Mutex
	seen map[string]time.Time // signature -> when it leaves the window
}

// Verify checks one request. uri is the full URI HubSpot called
// (https://host/path?query), body the raw body, sig and ts the headers.
func (v *WebhookVerifier) Verify(method, uri string, body []byte, sig, ts string) error {
	now := time.Now()
	if v.Now != nil {
		now = v.Now()
	}
	ms, err := strconv.ParseInt(ts, 10, 64)
	if sig == "" || err != nil || v.Secret == "" {
		return ErrWebhookSignature
	}
	want := SignWebhookV3(v.Secret, method, uri, body, ts)
	if !hmac.Equal([]byte(sig), []byte(want)) {
		return ErrWebhookSignature
	}
	at := time.UnixMilli(ms)
	if d := now.Sub(at); d > WebhookMaxAge || d < -WebhookMaxAge {
		return ErrWebhookStale
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.seen == nil {
		v.seen = map[string]time.Time{}
	}
	for s, until := range v.seen {
		if now.After(until) {
			delete(v.seen, s)
		}
	}
	if _, ok := v.seen[sig]; ok {
		return ErrWebhookReplay
	}
	v.seen[sig] = at.Add(WebhookMaxAge)
	return nil
}

// uriDecoder decodes what the v3 signature's URI has decoded.
var uriDecoder = func() *strings.Replacer {
	var pairs []string
	for _, c := range ":/?@!$'()*,;" {
		enc := "%" + strings.ToUpper(strconv.FormatInt(int64(c), 16))
		pairs = append(pairs, enc, string(c), strings.ToLower(enc), string(c))
	}
	return strings.NewReplacer(pairs...)
}()

// SignWebhookV3 returns the v3 signature of a request.
func SignWebhookV3(secret, method, uri string, body []byte, ts string) string {
	mac := hmac.New(sha256.New, []byte(secret))
	mac.Write([]byte(method))
	mac.Write([]byte(uriDecoder.Replace(uri)))
	mac.Write(body)
	mac.Write([]byte(ts))
	return base64.StdEncoding.EncodeToString(mac.Sum(nil))
}

// WebhookEvent is one event of a webhook request's JSON array.
type WebhookEvent struct {
	EventID          int64   `json:"eventId"`
	SubscriptionType string  `json:"subscriptionType"`
	ObjectID         int64   `json:"objectId"`
	OccurredAt       int64   `json:"occurredAt"`
	PropertyName     string  `json:"propertyName,omitempty"`
	AttemptNumber    int     `json:"attemptNumber"`
	PrimaryObjectID  int64   `json:"primaryObjectId,omitempty"`
	MergedObjectIDs  []int64 `json:"mergedObjectIds,omitempty"`
	NewObjectID      int64   `json:"newObjectId,omitempty"`
}

// ParseWebhook decodes a webhook body and returns the ids of the contacts
// its contact events name: created, changed, deleted (archived or
// restored), merged (the contact kept and those merged into it). The
// events are hints to read the contacts again, never their data; events
// of other objects are ignored.
func ParseWebhook(body []byte) ([]string, error) {
	var events []WebhookEvent
	if err := json.Unmarshal(body, &events); err != nil {
		return nil, errors.New("hubspot webhook: the body is not a JSON array of events")
	}
	var ids []string
	add := func(id int64) {
		if id > 0 {
			ids = append(ids, strconv.FormatInt(id, 10))
		}
	}
	for _, e := range events {
		switch e.SubscriptionType {
		case "contact.creation", "contact.propertyChange", "contact.deletion", "contact.restore",
			"contact.privacyDeletion":
			add(e.ObjectID)
		case "contact.merge":
			add(e.ObjectID)
			add(e.PrimaryObjectID)
			add(e.NewObjectID)
			for _, id := range e.MergedObjectIDs {
				add(id)
			}
		}
	}
	return ids, nil
}
