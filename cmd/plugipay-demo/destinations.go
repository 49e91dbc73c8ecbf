package main

import (
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// The PayGate and Pin demos run plugipay-sync with config.example.yaml as
// it is: only environment variables select and configure the destination,
// as an operator would.

// externalIDKey is config.example.yaml's destination.paygate.external_id_key.
const externalIDKey = "crm_user_id"

// The Pin demo's seed: customers made at checkout for pinSeedUsers of the
// CRM's users, pinRenamed of them under another name, and pinAmbiguous of
// them twice (two customers with one email, which --match-email must not
// link).
const (
	pinSeedUsers = 300
	pinRenamed   = 20
	pinAmbiguous = 2
)

var httpClient = &http.Client{Timeout: 30 * time.Second}

// runPayGate is the demo against the PayGate-style fake: a first backfill,
// an unchanged pass, and a pass with the state DB deleted, whose cache is
// rebuilt from the external-id metadata key.
func (d *demo) runPayGate(mockBin, secret string) error {
	ids, err := csvUserIDs(d.csv)
	if err != nil {
		return err
	}
	stop, err := d.startFake(mockBin, destPayGate, "PayGate-style", 25, secret)
	if err != nil {
		return err
	}
	defer stop()

	state := filepath.Join(d.dir, "state.db")
	sameCSV := func() (string, error) { return d.csv, nil }
	return d.runPasses(state, "fake", func() (int, func(), error) { return d.paygateCustomers(ids) }, []pass{
		{title: "Pass 1: first sync into an empty PayGate", prepare: sameCSV,
			check: func(before, after writes, _ int, summary string) {
				valid, ok := validUsers(summary)
				d.expect(ok && after.post-before.post == valid, "one create (POST) per valid CRM user (%d creates, %d valid users)", after.post-before.post, valid)
				d.expect(after.patch == before.patch && after.del == before.del, "no update, no delete (%d PATCH, %d DELETE)", after.patch-before.patch, after.del-before.del)
			}},
		{title: "Pass 2: nothing changed in the CRM", prepare: sameCSV,
			check: func(before, after writes, _ int, _ string) {
				d.expect(!before.changed(after), "zero writes (%d creates, %d updates)", after.post-before.post, after.patch-before.patch)
			}},
		{title: "Pass 3: state DB deleted (lost volume): the cache is rebuilt from the " + externalIDKey + " metadata key",
			prepare: func() (string, error) { return d.csv, removeState(state) },
			check: func(before, after writes, _ int, _ string) {
				d.expect(!before.changed(after), "zero writes (%d creates, %d updates)", after.post-before.post, after.patch-before.patch)
				d.say("  (the rebuild listed the customers in %d GET requests)\n", after.get-before.get)
			}},
	})
}

// runPin is the demo against the Pin-style fake, which only checkout
// creates customers in: they are seeded, linked to CRM users by email,
// and then only updated.
func (d *demo) runPin(mockBin, secret string) error {
	seed, err := d.pinSeed()
	if err != nil {
		return err
	}
	stop, err := d.startFake(mockBin, destPin, "Pin-style", 10, secret, "--seed-pin-csv", seed.path)
	if err != nil {
		return err
	}
	defer stop()
	d.say("seeded %d customers made at checkout: %d CRM users' emails, %d of them under another name,\n",
		len(seed.customers), pinSeedUsers, pinRenamed)
	d.say("%d emails with two customers each\n", pinAmbiguous)
	total := len(seed.customers)
	linked := pinSeedUsers - pinAmbiguous

	state := filepath.Join(d.dir, "state.db")
	check := func(before, after writes) {
		cs, err := d.pinCustomers()
		if err != nil {
			d.expect(false, "list the fake's customers: %v", err)
			return
		}
		d.expect(len(cs) == total, "customer count stays %d (%d)", total, len(cs))
		d.expect(after.post == before.post, "no create (POST) sent (%d): the sync cannot create Pin customers", after.post-before.post)
		if seen, err := d.cardDataSeen(); err != nil {
			d.expect(false, "read CardDataSeen: %v", err)
		} else {
			d.expect(!seen, "no card data in any request (CardDataSeen %v)", seen)
		}
	}

	d.say("\n== Step 1: link CRM users to Pin customers by email (plugipay-sync rebuild-cache --match-email)\n")
	before, err := d.writes()
	if err != nil {
		return err
	}
	report, err := d.runSync(state, d.csv, "rebuild-cache", "--match-email")
	var ee *exec.ExitError
	code := 0
	switch {
	case err == nil:
		d.say("exit code 0: nothing ambiguous\n")
	case errors.As(err, &ee) && ee.ExitCode() == 2:
		code = 2
		d.say("exit code 2: ambiguous emails were listed and left unlinked (expected here: the demo seeded them)\n")
	default:
		return fmt.Errorf("plugipay-sync rebuild-cache --match-email: %w", err)
	}
	after, err := d.writes()
	if err != nil {
		return err
	}
	d.expect(code == 2, "exit code 2 for the ambiguous emails (%d)", code)
	d.expect(reportCount(report, "linked") == int64(linked), "%d users linked (%d): one per seeded email with exactly one customer", linked, reportCount(report, "linked"))
	d.expect(reportCount(report, "ambiguous") == pinAmbiguous, "%d ambiguous emails reported (%d)", pinAmbiguous, reportCount(report, "ambiguous"))
	d.expect(!before.changed(after), "zero writes while linking (%d)", after.put+after.post-before.put-before.post)
	check(before, after)

	// differing counts the linked customers (seeded, email not ambiguous)
	// whose name is not the CRM's, from the fake's customer list.
	differing := func() (differ, customers int, err error) {
		cs, err := d.pinCustomers()
		if err != nil {
			return 0, 0, err
		}
		n := 0
		for _, c := range cs {
			email := strings.ToLower(c.Email)
			want, ok := seed.crmName[email]
			name := c.FirstName
			if c.LastName != "" {
				name += " " + c.LastName
			}
			if ok && !seed.ambiguous[email] && name != want {
				n++
			}
		}
		return n, len(cs), nil
	}
	passes := []struct {
		title string
		check func(before, after writes, differBefore, differAfter int)
	}{
		{"Pass 1: sync --once: only the linked customers whose CRM data differ are updated", func(before, after writes, differBefore, differAfter int) {
			d.expect(differBefore == pinRenamed, "%d linked customers had a name other than the CRM's before the pass (%d)", pinRenamed, differBefore)
			d.expect(after.put-before.put == int64(differBefore), "one update (PUT) per linked customer whose name differs (%d PUTs, %d differ)", after.put-before.put, differBefore)
			d.expect(after.patch == before.patch && after.del == before.del, "no other write (%d PATCH, %d DELETE)", after.patch-before.patch, after.del-before.del)
			d.expect(differAfter == 0, "every linked customer now has the CRM's name (%d differ)", differAfter)
		}},
		{"Pass 2: sync --once again, nothing changed", func(before, after writes, _, differAfter int) {
			d.expect(!before.changed(after), "zero writes (%d updates, %d creates)", after.put-before.put, after.post-before.post)
			d.expect(differAfter == 0, "every linked customer still has the CRM's name (%d differ)", differAfter)
		}},
	}
	for _, p := range passes {
		differBefore, _, err := differing()
		if err != nil {
			return err
		}
		before, after, _, err := d.syncPass(p.title, state, d.csv)
		if err != nil {
			return err
		}
		differAfter, n, err := differing()
		if err != nil {
			return err
		}
		d.say("fake: %d customers; this pass sent %d updates (PUT) and %d creates (POST)\n",
			n, after.put-before.put, after.post-before.post)
		p.check(before, after, differBefore, differAfter)
		check(before, after)
	}
	return d.finish()
}

// startFake starts plugipay-mock --api api (with args) taking secret, a
// fresh test key never printed, selects and configures it for
// plugipay-sync with environment variables only (as an operator would)
// and says so: style names the API, defaultRPS is plugipay-sync's default
// destination.<api>.requests_per_second.
func (d *demo) startFake(mockBin, api, style string, defaultRPS int, secret string, args ...string) (stop func(), err error) {
	d.secret = secret
	prefix := strings.ToUpper(api) // PAYGATE_, PIN_
	stop, err = d.startMock(mockBin, append([]string{"--api", api, "--requests-per-second", "0"}, args...), prefix+"_SECRET_KEY="+secret)
	if err != nil {
		return nil, err
	}
	d.env = []string{
		"PLUGIPAY_SYNC_DESTINATION=" + api,
		prefix + "_BASE_URL=" + d.baseURL,
		prefix + "_SECRET_KEY=" + secret,
		prefix + "_REQUESTS_PER_SECOND=0",
	}
	d.say("%s fake listening on %s (rate limit off for the demo; plugipay-sync\n", style, d.baseURL)
	d.say("caps itself at destination.%s.requests_per_second, %d/s by default)\n", api, defaultRPS)
	d.say("plugipay-sync: config %s as it is, destination chosen by PLUGIPAY_SYNC_DESTINATION=%s\n", d.config, api)
	return stop, nil
}

var summaryRE = regexp.MustCompile(`read (\d+)  created \d+  updated \d+  unchanged \d+  recovered \d+  rejected (\d+)`)

// validUsers is read minus rejected from plugipay-sync's run summary.
func validUsers(summary string) (int64, bool) {
	m := summaryRE.FindStringSubmatch(summary)
	if m == nil {
		return 0, false
	}
	read, _ := strconv.ParseInt(m[1], 10, 64)
	rejected, _ := strconv.ParseInt(m[2], 10, 64)
	return read - rejected, true
}

// reportCount reads "<name> N" from rebuild-cache's report line; -1 if
// absent.
func reportCount(report, name string) int64 {
	m := regexp.MustCompile(`(?:^|  )` + regexp.QuoteMeta(name) + ` (\d+)`).FindStringSubmatch(report)
	if m == nil {
		return -1
	}
	n, _ := strconv.ParseInt(m[1], 10, 64)
	return n
}

// csvUserIDs is the set of user ids in the CRM export.
func csvUserIDs(path string) (map[string]bool, error) {
	rows, err := readCSV(path)
	if err != nil {
		return nil, err
	}
	ids := map[string]bool{}
	for _, r := range rows {
		if id := strings.TrimSpace(r["id"]); id != "" {
			ids[id] = true
		}
	}
	return ids, nil
}

// readCSV reads a CSV with a header into one map per row.
func readCSV(path string) ([]map[string]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	r := csv.NewReader(f)
	r.FieldsPerRecord = -1
	header, err := r.Read()
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if len(header) > 0 {
		header[0] = strings.TrimPrefix(header[0], "\uFEFF")
	}
	var rows []map[string]string
	for {
		rec, err := r.Read()
		if errors.Is(err, io.EOF) {
			return rows, nil
		}
		if err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		row := map[string]string{}
		for i, h := range header {
			if i < len(rec) {
				row[h] = rec[i]
			}
		}
		rows = append(rows, row)
	}
}

// pinSeedData is what the Pin demo seeded.
type pinSeedData struct {
	path      string
	customers [][3]string       // email, first_name, last_name
	crmName   map[string]string // lower-cased email -> the CRM's name
	ambiguous map[string]bool   // lower-cased emails seeded twice
}

var simpleEmail = regexp.MustCompile(`^[a-z0-9._%+-]+@[a-z0-9-]+(\.[a-z0-9-]+)+$`)
var simpleID = regexp.MustCompile(`^usr_[0-9]+$`)

// pinSeed picks pinSeedUsers CRM users spread over the export, whose row
// is plainly valid and needs no normalisation and whose email no other
// user has, and writes their checkout customers to a CSV for
// plugipay-mock --seed-pin-csv: the first pinAmbiguous twice (a second
// customer, "Guest", with the same email), the next pinRenamed with
// another name, the rest as the CRM has them.
func (d *demo) pinSeed() (pinSeedData, error) {
	rows, err := readCSV(d.csv)
	if err != nil {
		return pinSeedData{}, err
	}
	emails := map[string]int{}
	for _, r := range rows {
		emails[strings.ToLower(strings.TrimSpace(r["email"]))]++
	}
	var clean []map[string]string
	for _, r := range rows {
		id, email, name := r["id"], r["email"], r["full_name"]
		if simpleID.MatchString(id) && simpleEmail.MatchString(email) && emails[email] == 1 &&
			name != "" && name == strings.Join(strings.Fields(name), " ") {
			clean = append(clean, r)
		}
	}
	if len(clean) < pinSeedUsers {
		return pinSeedData{}, fmt.Errorf("%s: only %d plainly valid users with a unique email, the Pin demo needs %d", d.csv, len(clean), pinSeedUsers)
	}
	s := pinSeedData{path: filepath.Join(d.dir, "pin-checkout.csv"), crmName: map[string]string{}, ambiguous: map[string]bool{}}
	step := len(clean) / pinSeedUsers
	for i := range pinSeedUsers {
		r := clean[i*step]
		email, name := r["email"], r["full_name"]
		s.crmName[email] = name
		checkout := name
		switch {
		case i < pinAmbiguous:
			s.ambiguous[email] = true
			s.customers = append(s.customers, [3]string{email, "Guest", ""})
		case i < pinAmbiguous+pinRenamed:
			checkout = otherName(name, i)
		}
		first, last := splitName(checkout)
		s.customers = append(s.customers, [3]string{email, first, last})
	}
	var b strings.Builder
	w := csv.NewWriter(&b)
	_ = w.Write([]string{"email", "first_name", "last_name"})
	for _, c := range s.customers {
		_ = w.Write(c[:])
	}
	w.Flush()
	return s, os.WriteFile(s.path, []byte(b.String()), 0o600)
}

// otherName is how a customer may have typed their name at checkout: in
// capitals, or the first word only.
func otherName(name string, i int) string {
	if first, _, ok := strings.Cut(name, " "); ok && i%2 == 0 {
		return first
	}
	if up := strings.ToUpper(name); up != name {
		return up
	}
	return name + " (checkout)"
}

// splitName splits at the last space, as a checkout form's first and last
// name fields would hold a name.
func splitName(name string) (first, last string) {
	i := strings.LastIndexByte(name, ' ')
	if i < 0 {
		return name, ""
	}
	return name[:i], name[i+1:]
}

// paygateCustomers is customers for runPasses: the number of the fake's
// customers, and the check that each carries one of the CRM's user ids
// (ids) in metadata[externalIDKey], each id on one customer.
func (d *demo) paygateCustomers(ids map[string]bool) (int, func(), error) {
	byID, n, err := d.paygateCustomersByID()
	return n, func() {
		var dups, missingKey, unknown int
		for id, count := range byID {
			switch {
			case id == "":
				missingKey += count
			case !ids[id]:
				unknown += count
			case count > 1:
				dups += count - 1
			}
		}
		d.expect(missingKey == 0 && unknown == 0, "every customer carries a CRM user id in metadata.%s (%d without, %d unknown)", externalIDKey, missingKey, unknown)
		d.expect(dups == 0, "each CRM user id appears exactly once (%d duplicate customers)", dups)
	}, err
}

// paygateCustomersByID lists the fake's customers through its API and
// counts them by metadata[externalIDKey] ("" for none).
func (d *demo) paygateCustomersByID() (byID map[string]int, n int, err error) {
	byID = map[string]int{}
	after := ""
	for {
		q := url.Values{"limit": {"100"}}
		if after != "" {
			q.Set("starting_after", after)
		}
		var page struct {
			Data []struct {
				ID       string            `json:"id"`
				Metadata map[string]string `json:"metadata"`
			} `json:"data"`
			HasMore bool `json:"has_more"`
		}
		if err := d.getJSON(d.baseURL+"/customers?"+q.Encode(), func(r *http.Request) {
			r.Header.Set("Authorization", "Bearer "+d.secret)
		}, &page); err != nil {
			return nil, 0, err
		}
		for _, c := range page.Data {
			n++
			byID[c.Metadata[externalIDKey]]++
		}
		if !page.HasMore || len(page.Data) == 0 {
			return byID, n, nil
		}
		after = page.Data[len(page.Data)-1].ID
	}
}

type pinCustomer struct {
	Token     string `json:"token"`
	Email     string `json:"email"`
	FirstName string `json:"first_name"`
	LastName  string `json:"last_name"`
}

// pinCustomers lists the fake's (test-mode) customers through its API.
func (d *demo) pinCustomers() ([]pinCustomer, error) {
	var all []pinCustomer
	for page := 1; ; page++ {
		var p struct {
			Response   []pinCustomer `json:"response"`
			Pagination struct {
				Next *int `json:"next"`
			} `json:"pagination"`
		}
		if err := d.getJSON(fmt.Sprintf("%s/customers?page=%d", d.baseURL, page), func(r *http.Request) {
			r.SetBasicAuth(d.secret, "")
		}, &p); err != nil {
			return nil, err
		}
		all = append(all, p.Response...)
		if p.Pagination.Next == nil || len(p.Response) == 0 {
			return all, nil
		}
	}
}

func (d *demo) getJSON(u string, auth func(*http.Request), v any) error {
	r, err := http.NewRequest(http.MethodGet, u, nil)
	if err != nil {
		return err
	}
	auth(r)
	resp, err := httpClient.Do(r)
	if err != nil {
		return fmt.Errorf("list customers: %w", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return fmt.Errorf("list customers: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("list customers: %s: %.300s", resp.Status, body)
	}
	if err := json.Unmarshal(body, v); err != nil {
		return fmt.Errorf("list customers: %w", err)
	}
	return nil
}

// cardDataSeen reads the Pin fake's card-data gauge from /metrics.
func (d *demo) cardDataSeen() (bool, error) {
	resp, err := httpClient.Get(d.origin + "/metrics")
	if err != nil {
		return false, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return false, err
	}
	for _, line := range strings.Split(string(body), "\n") {
		if v, ok := strings.CutPrefix(line, "plugipay_mock_card_data_seen "); ok {
			return strings.TrimSpace(v) != "0", nil
		}
	}
	return false, errors.New("the mock's /metrics has no plugipay_mock_card_data_seen")
}
