package fake

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"time"
)

var batchRE = regexp.MustCompile(`^/crm/(?:v3/objects|objects/\d{4}-\d{2})/contacts/batch/read$`)

// serveBatchRead is POST .../contacts/batch/read: at most 100 inputs, by
// contact id or by idProperty; archived=true reads only archived contacts,
// otherwise only live ones (a merged contact's old id, see Merge, reads as
// the contact it was merged into). 200 when every input is found, 207
// with an OBJECT_NOT_FOUND error listing the others.
func (s *Server) serveBatchRead(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.requests["batch"]++
	if r.Method != http.MethodPost {
		writeError(w, http.StatusMethodNotAllowed, "VALIDATION_ERROR", "method not allowed", nil)
		return
	}
	if r.Header.Get("Authorization") != "Bearer "+s.opts.Token || s.opts.Token == "" {
		writeError(w, http.StatusUnauthorized, "INVALID_AUTHENTICATION", "Authentication credentials not found.", nil)
		return
	}
	if !s.allow(w, false) {
		return
	}
	var body struct {
		Properties []string `json:"properties"`
		IDProperty string   `json:"idProperty"`
		Inputs     []struct {
			ID string `json:"id"`
		} `json:"inputs"`
	}
	if err := json.NewDecoder(r.Body).Decode(&body); err != nil || len(body.Inputs) == 0 {
		writeError(w, http.StatusBadRequest, "VALIDATION_ERROR", "invalid batch input", nil)
		return
	}
	if len(body.Inputs) > 100 {
		writeError(w, http.StatusBadRequest, "VALIDATION_ERROR", "Batch input must have at most 100 inputs", nil)
		return
	}
	archived := r.URL.Query().Get("archived") == "true"
	props := body.Properties
	if props == nil {
		props = defaultProps
	}
	var results []map[string]any
	var missing []string
	for _, in := range body.Inputs {
		c := s.find(in.ID, body.IDProperty)
		if c != nil && !archived {
			for c.mergedInto != 0 {
				c = s.find(strconv.Itoa(c.mergedInto), "")
			}
		}
		if c == nil || c.Archived != archived || (archived && c.mergedInto != 0) {
			missing = append(missing, in.ID)
			continue
		}
		results = append(results, s.object(c, props))
	}
	out := map[string]any{"status": "COMPLETE", "results": nonNil(results)}
	if len(missing) > 0 {
		out["numErrors"] = 1
		out["errors"] = []map[string]any{{"status": "error", "category": "OBJECT_NOT_FOUND",
			"message": "Could not get some CONTACT objects, they may be deleted or not exist. Check that ids are valid.",
			"context": map[string]any{"ids": missing}}}
		w.Header().Set("Content-Type", "application/json;charset=utf-8")
		w.WriteHeader(http.StatusMultiStatus)
		_ = json.NewEncoder(w).Encode(out)
		return
	}
	writeJSON(w, out)
}

// find returns the contact with id (or, with prop, that property's
// value); nil if none. s.mu is held.
func (s *Server) find(id, prop string) *Contact {
	for _, c := range s.contacts {
		if prop == "" && strconv.Itoa(c.ID) == id || prop != "" && c.Props[prop] == id {
			return c
		}
	}
	return nil
}

// Merge merges contact from into contact into, as HubSpot's merge does:
// from's id reads as into from now on.
func (s *Server) Merge(from, into int, at time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, c := range s.contacts {
		switch c.ID {
		case from:
			c.mergedInto, c.Updated = into, at
		case into:
			c.Updated = at
		}
	}
}

// Webhook is one event the fake delivers (see DeliverWebhook).
type Webhook struct {
	EventID          int64   `json:"eventId"`
	SubscriptionID   int64   `json:"subscriptionId"`
	PortalID         int64   `json:"portalId"`
	AppID            int64   `json:"appId"`
	OccurredAt       int64   `json:"occurredAt"`
	SubscriptionType string  `json:"subscriptionType"`
	AttemptNumber    int     `json:"attemptNumber"`
	ObjectID         int64   `json:"objectId"`
	PropertyName     string  `json:"propertyName,omitempty"`
	PropertyValue    string  `json:"propertyValue,omitempty"`
	ChangeSource     string  `json:"changeSource"`
	PrimaryObjectID  int64   `json:"primaryObjectId,omitempty"`
	MergedObjectIDs  []int64 `json:"mergedObjectIds,omitempty"`
	NewObjectID      int64   `json:"newObjectId,omitempty"`
}

// SignedWebhook is a webhook request as HubSpot sends it, to send (or
// tamper with, or send again).
type SignedWebhook struct {
	URL       string
	Body      []byte
	Timestamp string
	Signature string
}

// SignWebhook builds the request HubSpot sends to target for events,
// signed with the app's client secret at time at (signature v3: base64
// HMAC-SHA256 of method + URI + body + timestamp in ms).
func SignWebhook(target, secret string, at time.Time, events ...Webhook) SignedWebhook {
	body, _ := json.Marshal(events)
	ts := strconv.FormatInt(at.UnixMilli(), 10)
	uri := target
	for _, c := range ":/?@!$'()*,;" {
		uri = strings.ReplaceAll(uri, url.QueryEscape(string(c)), string(c))
	}
	mac := hmac.New(sha256.New, []byte(secret))
	fmt.Fprintf(mac, "%s%s%s%s", http.MethodPost, uri, body, ts)
	return SignedWebhook{URL: target, Body: body, Timestamp: ts, Signature: base64.StdEncoding.EncodeToString(mac.Sum(nil))}
}

// Send posts the webhook to endpoint (the address the request reaches
// behind the proxy its signed URL names; empty: that URL) and returns the
// status.
func (w SignedWebhook) Send(ctx context.Context, endpoint string) (int, error) {
	if endpoint == "" {
		endpoint = w.URL
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, endpoint, bytes.NewReader(w.Body))
	if err != nil {
		return 0, err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-HubSpot-Signature-v3", w.Signature)
	req.Header.Set("X-HubSpot-Request-Timestamp", w.Timestamp)
	req.Header.Set("X-HubSpot-Signature-Version", "v3")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, err
	}
	resp.Body.Close()
	return resp.StatusCode, nil
}
