package hubspot

import (
	"context"
	"iter"
	"net/http"
	"net/url"

	"github.com/plugipay-sync/plugipay-sync/sync"
)

var _ sync.IDReader = (*Source)(nil)

// BatchReadSize is the most inputs one batch read takes.
const BatchReadSize = 100

// batchRead is the batch read endpoint's answer: 200 with every contact,
// 207 with those found and the ids not found in errors.
type batchRead struct {
	Results []contact `json:"results"`
}

// RecordsByID reads the contacts with the external ids ids through the
// batch read endpoint (100 a call), for the event path's targeted sync
// (sync.IDReader, issue 17). The ids are contact ids when the external id
// is mapped from "id", otherwise values of that property (idProperty, a
// unique property). An id not found among the live contacts is looked
// for among the archived ones, which are yielded as deleted; a merged
// contact's old id reads as the merged contact, whose external id is then
// another one (a sync of the old id finds it gone). It neither reads nor
// moves the watermark.
func (s *Source) RecordsByID(ctx context.Context, ids []string) iter.Seq2[sync.Record, error] {
	return func(yield func(sync.Record, error) bool) {
		r := &read{s: s, vals: make([]string, len(s.mapper.Fields()))}
		idProp := s.mapper.Fields()[0]
		yielded := map[string]bool{} // contact ids: a merged id reads as a contact read already
		for len(ids) > 0 {
			chunk := ids[:min(len(ids), BatchReadSize)]
			ids = ids[len(chunk):]
			found := map[string]bool{}
			for _, archived := range []bool{false, true} {
				var want []string
				for _, id := range chunk {
					if !found[id] {
						want = append(want, id)
					}
				}
				if len(want) == 0 {
					break
				}
				res, err := s.batchRead(ctx, want, idProp, archived)
				if err != nil {
					yield(sync.Record{}, err)
					return
				}
				for _, c := range res {
					id := c.ID
					if idProp != IDField && c.Properties[idProp] != nil {
						id = *c.Properties[idProp]
					}
					found[id] = true
					if yielded[c.ID] {
						continue
					}
					yielded[c.ID] = true
					if !r.emit(c, archived, yield) {
						return
					}
				}
			}
		}
	}
}

func (s *Source) batchRead(ctx context.Context, ids []string, idProp string, archived bool) ([]contact, error) {
	type input struct {
		ID string `json:"id"`
	}
	body := struct {
		Properties []string `json:"properties"`
		IDProperty string   `json:"idProperty,omitempty"`
		Inputs     []input  `json:"inputs"`
	}{Properties: s.props}
	if idProp != IDField {
		body.IDProperty = idProp
	}
	for _, id := range ids {
		body.Inputs = append(body.Inputs, input{id})
	}
	q := url.Values{}
	if archived {
		q.Set("archived", "true")
	}
	var out batchRead
	path := "/contacts/batch/read"
	if len(q) > 0 {
		path += "?" + q.Encode()
	}
	if err := s.do(ctx, opBatchRead, http.MethodPost, path, body, &out); err != nil {
		return nil, err
	}
	return out.Results, nil
}
