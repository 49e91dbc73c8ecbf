package hubspot_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/plugipay-sync/plugipay-sync/crm"
	"github.com/plugipay-sync/plugipay-sync/crm/hubspot"
	"github.com/plugipay-sync/plugipay-sync/crm/hubspot/fake"
	"github.com/plugipay-sync/plugipay-sync/sync"
)

// RecordsByID reads live contacts with the batch read, archived ones as
// deleted, a merged contact's old id as nothing of its own, and unknown
// ids as nothing; 150 ids take two batches of each kind at most.
func TestSource_RecordsByID(t *testing.T) {
	e := newEnv(t, fake.Options{})
	for id := 1; id <= 150; id++ {
		put(e.fake, id, t0)
	}
	e.fake.Archive(7, t0.Add(time.Hour))
	e.fake.Merge(8, 9, t0.Add(time.Hour))
	src := e.source(t, nil)
	var ids []string
	for id := 1; id <= 150; id++ {
		ids = append(ids, fmt.Sprint(id))
	}
	ids = append(ids, "999")
	var got, deleted []string
	for rec, err := range src.RecordsByID(context.Background(), ids) {
		if err != nil {
			t.Fatal(err)
		}
		if rec.Deleted {
			deleted = append(deleted, rec.ExternalID)
			continue
		}
		got = append(got, rec.ExternalID)
	}
	if !slices.Equal(deleted, []string{"7"}) {
		t.Errorf("deleted = %v, want [7]", deleted)
	}
	if len(got) != 148 || slices.Contains(got, "8") || slices.Contains(got, "999") {
		t.Errorf("got %d live records (want 148: not 7, not the merged 8 as itself, not 999)", len(got))
	}
	if n := e.fake.Requests("batch"); n != 4 {
		t.Errorf("batch reads = %d, want 4 (two chunks, each live then archived)", n)
	}
}

// The v3 signature: a request signed as HubSpot signs it passes once; a
// bad signature, a changed body, a stale or future timestamp and a
// replayed request are refused.
func TestWebhookVerifier(t *testing.T) {
	const secret = "client-secret-0123456789"
	now := time.Date(2026, 12, 1, 3, 0, 0, 0, time.UTC)
	target := "https://sync.example.com/v1/webhooks/hubspot?portal=62515&x=a:b"
	ev := fake.Webhook{EventID: 1, SubscriptionType: "contact.propertyChange", ObjectID: 42, PropertyName: "email", OccurredAt: now.UnixMilli()}
	ok := fake.SignWebhook(target, secret, now, ev)
	v := &hubspot.WebhookVerifier{Secret: secret, Now: func() time.Time { return now }}
	for _, tc := range []struct {
		name string
		w    fake.SignedWebhook
		want error
	}{
		{"OK", ok, nil},
		{"Replayed", ok, hubspot.ErrWebhookReplay},
		{"WrongSecret", fake.SignWebhook(target, "another-secret", now, ev), hubspot.ErrWebhookSignature},
		{"ChangedBody", func() fake.SignedWebhook {
			w := fake.SignWebhook(target, secret, now.Add(time.Second), ev)
			w.Body = append([]byte(nil), w.Body...)
			w.Body[len(w.Body)-3] = '9'
			return w
		}(), hubspot.ErrWebhookSignature},
		{"NoSignature", func() fake.SignedWebhook { w := fake.SignWebhook(target, secret, now, ev); w.Signature = ""; return w }(), hubspot.ErrWebhookSignature},
		{"Stale", fake.SignWebhook(target, secret, now.Add(-5*time.Minute-time.Second), ev), hubspot.ErrWebhookStale},
		{"Future", fake.SignWebhook(target, secret, now.Add(5*time.Minute+time.Second), ev), hubspot.ErrWebhookStale},
		{"JustInside", fake.SignWebhook(target, secret, now.Add(-5*time.Minute+time.Second), ev), nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := v.Verify("POST", tc.w.URL, tc.w.Body, tc.w.Signature, tc.w.Timestamp)
			if !errors.Is(err, tc.want) || (tc.want == nil) != (err == nil) {
				t.Fatalf("Verify = %v, want %v", err, tc.want)
			}
		})
	}
	t.Run("WrongURI", func(t *testing.T) {
		w := fake.SignWebhook(target, secret, now.Add(2*time.Second), ev)
		if err := v.Verify("POST", "https://other.example.com/v1/webhooks/hubspot", w.Body, w.Signature, w.Timestamp); !errors.Is(err, hubspot.ErrWebhookSignature) {
			t.Fatalf("Verify = %v", err)
		}
	})
}

func TestParseWebhook(t *testing.T) {
	body := []byte(`[
	 {"eventId":1,"subscriptionType":"contact.creation","objectId":1},
	 {"eventId":2,"subscriptionType":"contact.propertyChange","objectId":2,"propertyName":"email","propertyValue":"x@example.com"},
	 {"eventId":3,"subscriptionType":"contact.deletion","objectId":3},
	 {"eventId":4,"subscriptionType":"contact.merge","objectId":4,"primaryObjectId":4,"mergedObjectIds":[5,6],"newObjectId":7},
	 {"eventId":5,"subscriptionType":"company.creation","objectId":99}
	]`)
	got, err := hubspot.ParseWebhook(body)
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(got)
	got = slices.Compact(got)
	if want := []string{"1", "2", "3", "4", "5", "6", "7"}; !slices.Equal(got, want) {
		t.Errorf("ids = %v, want %v", got, want)
	}
	if _, err := hubspot.ParseWebhook([]byte(`{"not":"an array"}`)); err == nil {
		t.Error("a non-array body parsed")
	}
}

var _ sync.IDReader = (*hubspot.Source)(nil)
var _ = crm.DefaultNormalize
