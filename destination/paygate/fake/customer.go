package fake

import (
	"maps"
	"net/http"
	"slices"
	"strings"
	"time"
)

// Customer is a stored customer. Empty strings are fields without a value
// (null on the wire).
type Customer struct {
	ID        string
	Email     string
	Name      string
	Phone     string
	Metadata  map[string]string // never nil in a stored customer
	CreatedAt time.Time
	UpdatedAt time.Time
}

// IDPrefix starts every customer id; IDLength random lowercase letters and
// digits follow it.
const (
	IDPrefix = "cus_"
	IDLength = 14
)

// TimeFormat is how created_at and updated_at are rendered: ISO 8601 in
// UTC with milliseconds. Stored times are truncated to milliseconds, so a
// time reads back exactly as stored.
const TimeFormat = "2006-01-02T15:04:05.000Z"

func (c *Customer) clone() Customer {
	out := *c
	out.Metadata = maps.Clone(c.Metadata)
	if out.Metadata == nil {
		out.Metadata = map[string]string{}
	}
	return out
}

// before orders customers by (CreatedAt, ID), ascending.
func (c *Customer) before(o *Customer) bool {
	if !c.CreatedAt.Equal(o.CreatedAt) {
		return c.CreatedAt.Before(o.CreatedAt)
	}
	return c.ID < o.ID
}

func compareCustomers(a, b *Customer) int {
	switch {
	case a.before(b):
		return -1
	case b.before(a):
		return 1
	}
	return 0
}

// wireCustomer is the customer object as the API renders it.
type wireCustomer struct {
	ID        string            `json:"id"`
	Object    string            `json:"object"`
	Email     *string           `json:"email"`
	Name      *string           `json:"name"`
	Phone     *string           `json:"phone"`
	Metadata  map[string]string `json:"metadata"`
	CreatedAt string            `json:"created_at"`
	UpdatedAt string            `json:"updated_at"`
}

func (c *Customer) wire() wireCustomer {
	md := maps.Clone(c.Metadata)
	if md == nil {
		md = map[string]string{}
	}
	return wireCustomer{
		ID:        c.ID,
		Object:    "customer",
		Email:     nullable(c.Email),
		Name:      nullable(c.Name),
		Phone:     nullable(c.Phone),
		Metadata:  md,
		CreatedAt: c.CreatedAt.UTC().Format(TimeFormat),
		UpdatedAt: c.UpdatedAt.UTC().Format(TimeFormat),
	}
}

func nullable(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}

// deletedCustomer is the answer to DELETE.
type deletedCustomer struct {
	ID      string `json:"id"`
	Object  string `json:"object"`
	Deleted bool   `json:"deleted"`
}

func notFound(id string) *ErrorBody {
	return &ErrorBody{Type: TypeInvalidRequest, Code: CodeResourceMissing, Message: "no such customer: '" + truncate(id, 80) + "'"}
}

// stamp returns the server time truncated to milliseconds, in UTC.
func (s *Server) stamp() time.Time {
	return s.now().UTC().Truncate(time.Millisecond)
}

// newIDLocked returns an unused customer id; s.mu must be held.
func (s *Server) newIDLocked() string {
	for {
		id := IDPrefix + s.randomAlnumLocked(IDLength)
		if _, taken := s.byID[id]; !taken {
			return id
		}
	}
}

// insertLocked stores c, keeping ordered sorted; s.mu must be held and
// c.ID unused.
func (s *Server) insertLocked(c *Customer) {
	i, _ := slices.BinarySearchFunc(s.ordered, c, compareCustomers)
	s.ordered = slices.Insert(s.ordered, i, c)
	s.byID[c.ID] = c
}

// deleteLocked removes the customer id; s.mu must be held.
func (s *Server) deleteLocked(id string) bool {
	c, ok := s.byID[id]
	if !ok {
		return false
	}
	if i, found := slices.BinarySearchFunc(s.ordered, c, compareCustomers); found {
		s.ordered = slices.Delete(s.ordered, i, i+1)
	}
	delete(s.byID, id)
	return true
}

// create answers POST /v1/customers.
func (s *Server) create(body []byte) (int, any) {
	in, e := parseInput(body)
	if e != nil {
		return http.StatusBadRequest, e
	}
	now := s.stamp()
	c := &Customer{Email: in.email.val, Name: in.name.val, Phone: in.phone.val, Metadata: map[string]string{},
		CreatedAt: now, UpdatedAt: now}
	for k, v := range in.metadata {
		if v != "" { // "" means "no such key", as on update
			c.Metadata[k] = v
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	c.ID = s.newIDLocked()
	s.insertLocked(c)
	s.writes++
	return http.StatusOK, c.wire()
}

// get answers GET /v1/customers/{id}.
func (s *Server) get(id string) (int, any) {
	s.mu.Lock()
	defer s.mu.Unlock()
	c, ok := s.byID[id]
	if !ok {
		return http.StatusNotFound, notFound(id)
	}
	return http.StatusOK, c.wire()
}

// update answers PATCH /v1/customers/{id}: only the fields present
// change; metadata merges key by key.
func (s *Server) update(id string, body []byte) (int, any) {
	in, e := parseInput(body)
	if e != nil {
		return http.StatusBadRequest, e
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	c, ok := s.byID[id]
	if !ok {
		return http.StatusNotFound, notFound(id)
	}
	md := maps.Clone(c.Metadata)
	if in.metadataClear {
		md = map[string]string{}
	}
	for k, v := range in.metadata {
		if v == "" {
			delete(md, k)
		} else {
			md[k] = v
		}
	}
	if len(md) > MaxMetadataKeys {
		return http.StatusBadRequest, errBody(CodeParameterInvalid,
			"metadata: a customer may hold at most 50 keys; this update would leave "+itoa(len(md)))
	}
	next := *c
	next.Metadata = md
	if in.email.set {
		next.Email = in.email.val
	}
	if in.name.set {
		next.Name = in.name.val
	}
	if in.phone.set {
		next.Phone = in.phone.val
	}
	if next.Email != c.Email || next.Name != c.Name || next.Phone != c.Phone || !maps.Equal(next.Metadata, c.Metadata) {
		next.UpdatedAt = s.stamp()
	}
	*c = next // CreatedAt and ID are unchanged, so ordered stays sorted
	s.writes++
	return http.StatusOK, c.wire()
}

// remove answers DELETE /v1/customers/{id}.
func (s *Server) remove(id string) (int, any) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.deleteLocked(id) {
		return http.StatusNotFound, notFound(id)
	}
	s.writes++
	return http.StatusOK, deletedCustomer{ID: id, Object: "customer", Deleted: true}
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return strings.ToValidUTF8(s[:n], "") + "..."
}
