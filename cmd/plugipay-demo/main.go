// Command plugipay-demo shows plugipay-sync working end to end with no
// credentials and no network: it starts the Plugipay emulator on a free
// local port and runs `plugipay-sync --once` against the sample CRM export
// five times — a first backfill, an unchanged second pass, a pass with the
// state DB deleted, a pass with one user renamed, and a pass with new users
// that another tool already created (409 recovery) — checking after each
// what the emulator saw. `make demo` builds the binaries and runs it.
//
// With --destination paygate or --destination pin it runs the same
// plugipay-sync, with the same config file and only environment variables
// changed, against the PayGate-style or the Pin-style fake that
// plugipay-mock --api serves (`make demo-paygate`, `make demo-pin`); see
// destinations.go.
package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/plugipay-sync/plugipay-sync/plugipay"
)

func main() {
	if err := run(os.Args[1:], os.Stdout); err != nil {
		fmt.Fprintf(os.Stderr, "plugipay-demo: %v\n", err)
		os.Exit(1)
	}
}

type demo struct {
	syncBin, config, csv, dir string
	out                       io.Writer
	shownWarnings             map[string]bool
	baseURL, keyID, secret    string
	// origin is the mock's http://HOST:PORT, where /metrics is served;
	// baseURL adds /v1 (PayGate) or /1 (Pin) to it.
	origin string
	// env is what plugipay-sync gets besides the state and CSV paths: it
	// selects and configures the destination.
	env    []string
	client *plugipay.Client
	failed bool
}

// The values of --destination.
const (
	destPlugipay = "plugipay"
	destPayGate  = "paygate"
	destPin      = "pin"
)

func run(args []string, out io.Writer) error {
	fs := flag.NewFlagSet("plugipay-demo", flag.ContinueOnError)
	d := &demo{out: out, keyID: "key_demo", shownWarnings: map[string]bool{}}
	mockBin := fs.String("mock", "bin/plugipay-mock", "path of the plugipay-mock binary")
	dest := fs.String("destination", destPlugipay, "destination to demonstrate: plugipay, paygate or pin")
	fs.StringVar(&d.syncBin, "sync", "bin/plugipay-sync", "path of the plugipay-sync binary")
	fs.StringVar(&d.config, "config", "config.example.yaml", "config file for plugipay-sync")
	fs.StringVar(&d.csv, "csv", "crm/testdata/sample_users.csv", "sample CRM export")
	fs.StringVar(&d.dir, "dir", ".demo", "scratch directory (emptied first)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments: %q", fs.Args())
	}
	switch *dest {
	case destPlugipay, destPayGate, destPin:
	default:
		return fmt.Errorf("--destination: must be plugipay, paygate or pin (got %q)", *dest)
	}
	if err := os.RemoveAll(d.dir); err != nil {
		return err
	}
	if err := os.MkdirAll(d.dir, 0o700); err != nil {
		return err
	}
	var b [12]byte
	_, _ = rand.Read(b[:])
	switch *dest {
	case destPayGate:
		return d.runPayGate(*mockBin, "sk_test_"+hex.EncodeToString(b[:]))
	case destPin:
		return d.runPin(*mockBin, "sk_test_"+hex.EncodeToString(b[:]))
	}
	d.secret = "sk_demo_" + hex.EncodeToString(b[:]) // fresh per demo, never printed

	// Rate limits off on both sides, so the demo takes seconds; the real
	// API's 20 writes/s would make each write pass last about a minute.
	stop, err := d.startMock(*mockBin, []string{"--key-id", d.keyID, "--read-rate", "0", "--write-rate", "0"},
		"PLUGIPAY_SECRET="+d.secret)
	if err != nil {
		return err
	}
	defer stop()
	d.env = []string{
		"PLUGIPAY_SYNC_DESTINATION=plugipay",
		"PLUGIPAY_BASE_URL=" + d.baseURL,
		"PLUGIPAY_KEY_ID=" + d.keyID,
		"PLUGIPAY_SECRET=" + d.secret,
		"PLUGIPAY_READS_PER_SECOND=0",
		"PLUGIPAY_WRITES_PER_SECOND=0",
	}
	if d.client, err = plugipay.New(plugipay.Options{BaseURL: d.baseURL, KeyID: d.keyID, Secret: d.secret}); err != nil {
		return err
	}
	d.say("Plugipay emulator listening on %s (rate limits off for the demo;\n", d.baseURL)
	d.say("the real API allows 20 writes/s, and plugipay-sync keeps under that by default)\n")

	state := filepath.Join(d.dir, "state.db")
	sameCSV := func() (string, error) { return d.csv, nil }
	return d.runPasses(state, "emulator", d.plugipayCustomers, []pass{
		{title: "Pass 1: first sync into an empty Plugipay", prepare: sameCSV,
			check: func(before, after writes, n int, _ string) {
				d.expect(after.post-before.post == int64(n), "one create per customer (%d creates, %d customers)", after.post-before.post, n)
			}},
		{title: "Pass 2: nothing changed in the CRM", prepare: sameCSV,
			check: func(before, after writes, _ int, _ string) {
				d.expect(!before.changed(after), "zero writes (%d creates, %d updates)", after.post-before.post, after.patch-before.patch)
			}},
		{title: "Pass 3: state DB deleted (lost volume): the cache is rebuilt from the customer list",
			prepare: func() (string, error) { return d.csv, removeState(state) },
			check: func(before, after writes, _ int, _ string) {
				d.expect(!before.changed(after), "zero writes (%d creates, %d updates)", after.post-before.post, after.patch-before.patch)
			}},
		{title: "Pass 4: one user renamed in the CRM", prepare: d.renameOne,
			check: func(before, after writes, _ int, _ string) {
				d.expect(after.patch-before.patch == 1 && after.post == before.post,
					"exactly one PATCH (%d updates, %d creates)", after.patch-before.patch, after.post-before.post)
			}},
		{title: "Pass 5: three new CRM users, two of them already created in Plugipay by another tool", prepare: d.addUsersMadeElsewhere,
			added: 3,
			check: func(before, after writes, _ int, _ string) {
				d.expect(after.post-before.post == 3, "three creates sent (%d): two answer 409 conflict and are recovered", after.post-before.post)
				d.expect(after.patch-before.patch == 1, "one PATCH (%d), for the recovered customer whose name differs", after.patch-before.patch)
			}},
	})
}

// pass is one plugipay-sync --once run of runPasses.
type pass struct {
	title string
	// prepare returns the CRM export the pass syncs.
	prepare func() (csv string, err error)
	// added is how many customers the pass adds.
	added int
	// check checks the pass from the writes the destination answered
	// before and after it, its customer count and the run summary.
	check func(before, after writes, customers int, summary string)
}

// runPasses runs passes on state against a destination that creates
// (POST) and updates (PATCH), named who in the output. After each pass it
// reads the destination's customers with customers, which returns their
// number and the checks of them, shows the count and what the pass sent,
// runs those checks, checks the count stays that of the first pass (plus
// what later passes add), then the pass's own checks.
func (d *demo) runPasses(state, who string, customers func() (int, func(), error), passes []pass) error {
	var want int
	for i, p := range passes {
		csv, err := p.prepare()
		if err != nil {
			return err
		}
		before, after, summary, err := d.syncPass(p.title, state, csv)
		if err != nil {
			return err
		}
		n, checkCustomers, err := customers()
		if err != nil {
			return err
		}
		d.say("%s: %d customers; this pass sent %d creates (POST) and %d updates (PATCH)\n",
			who, n, after.post-before.post, after.patch-before.patch)
		if i == 0 {
			want = n
		}
		want += p.added
		checkCustomers()
		d.expect(n == want, "customer count stays %d (%d)", want, n)
		p.check(before, after, n, summary)
	}
	return d.finish()
}

func (d *demo) say(format string, args ...any) { fmt.Fprintf(d.out, format, args...) }

func (d *demo) expect(ok bool, format string, args ...any) {
	mark := "✓"
	if !ok {
		mark, d.failed = "✗", true
	}
	d.say("  %s %s\n", mark, fmt.Sprintf(format, args...))
}

// startMock starts the emulator (plugipay-mock with args; env carries the
// secret) on a free port and waits for its address: the base URL
// plugipay-sync's config wants, which for Plugipay is the origin.
func (d *demo) startMock(bin string, args []string, env ...string) (stop func(), err error) {
	addrFile := filepath.Join(d.dir, "mock.addr")
	cmd := exec.Command(bin, append([]string{"--addr", "127.0.0.1:0", "--addr-file", addrFile}, args...)...)
	cmd.Env = append(os.Environ(), env...)
	logf, err := os.Create(filepath.Join(d.dir, "mock.log"))
	if err != nil {
		return nil, err
	}
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		logf.Close()
		return nil, fmt.Errorf("start emulator %s: %w (run `make build` first)", bin, err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	stop = func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-exited
		}
		logf.Close()
	}
	deadline := time.After(15 * time.Second)
	for {
		if b, err := os.ReadFile(addrFile); err == nil && len(bytes.TrimSpace(b)) > 0 {
			d.baseURL = strings.TrimSpace(string(b))
			u, err := url.Parse(d.baseURL)
			if err != nil || u.Host == "" {
				stop()
				return nil, fmt.Errorf("emulator wrote an invalid address %q", d.baseURL)
			}
			d.origin = u.Scheme + "://" + u.Host
			return stop, nil
		}
		select {
		case err := <-exited:
			logf.Close()
			return nil, fmt.Errorf("emulator exited before listening: %v (see %s)", err, logf.Name())
		case <-deadline:
			stop()
			return nil, errors.New("emulator did not start listening within 15s")
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// syncPass runs one titled pass, plugipay-sync --once on state and csv
// (see syncOnceSummary), and returns the writes the destination had
// answered before and after it and the run summary.
func (d *demo) syncPass(title, state, csv string) (before, after writes, summary string, err error) {
	if before, err = d.writes(); err != nil {
		return writes{}, writes{}, "", err
	}
	d.say("\n== %s\n", title)
	if summary, err = d.syncOnceSummary(state, csv); err != nil {
		return writes{}, writes{}, "", err
	}
	if after, err = d.writes(); err != nil {
		return writes{}, writes{}, "", err
	}
	return before, after, summary, nil
}

// finish ends a demo: an error if a check failed.
func (d *demo) finish() error {
	if d.failed {
		return errors.New("the demo's checks failed (see ✗ above)")
	}
	d.say("\nAll checks passed.\n")
	return nil
}

// removeState removes the state DB with its -wal and -shm files.
func removeState(state string) error {
	for _, suffix := range []string{"", "-wal", "-shm"} {
		if err := os.Remove(state + suffix); err != nil && !errors.Is(err, os.ErrNotExist) {
			return err
		}
	}
	return nil
}

// syncOnceSummary runs plugipay-sync --once, shows its summary, warnings
// and what its exit code means, and returns its standard output (the run
// summary).
func (d *demo) syncOnceSummary(state, csv string) (string, error) {
	stdout, err := d.runSync(state, csv, "--once")
	var ee *exec.ExitError
	switch {
	case err == nil:
		d.say("exit code 0: every record synced\n")
	case errors.As(err, &ee) && ee.ExitCode() == 2:
		d.say("exit code 2: the run finished; the rejected records above need fixing in the CRM\n")
	default:
		return stdout, fmt.Errorf("plugipay-sync --once: %w", err)
	}
	return stdout, nil
}

// runSync runs plugipay-sync with args (a command and its flags) on the
// state DB and CSV, with d.env, shows its standard output and each distinct
// warning once, and returns the output and the exit error.
func (d *demo) runSync(state, csv string, args ...string) (string, error) {
	args = append(args, "--config", d.config, "--log-format", "console", "--log-level", "warn")
	cmd := exec.Command(d.syncBin, args...)
	cmd.Env = append(os.Environ(), "PLUGIPAY_SYNC_MODE=", "PLUGIPAY_SYNC_STATE="+state, "PLUGIPAY_SYNC_CSV="+csv)
	cmd.Env = append(cmd.Env, d.env...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = io.MultiWriter(d.out, &stdout), &stderr
	err := cmd.Run()
	repeated := 0
	for _, line := range strings.Split(strings.TrimSpace(stderr.String()), "\n") {
		if line == "" {
			continue
		}
		// Show each distinct warning once; later passes repeat the same rows.
		key := line
		if _, msg, ok := strings.Cut(line, "\t"); ok {
			key = strings.NewReplacer(`"run_id": `, "").Replace(msg)
			if i := strings.Index(key, "{"); i >= 0 {
				if j := strings.Index(key[i:], ","); j >= 0 {
					key = key[:i] + key[i+j:]
				}
			}
		}
		if d.shownWarnings[key] {
			repeated++
			continue
		}
		d.shownWarnings[key] = true
		d.say("  | %s\n", line)
	}
	if repeated > 0 {
		d.say("  | (%d log lines as in an earlier pass)\n", repeated)
	}
	return stdout.String(), err
}

// addUsersMadeElsewhere appends three users to the renamed CSV and creates
// two of them in Plugipay directly, as another tool would: one exactly as
// the CRM has it, one with another name. The sync's creates for them answer
// 409 conflict and are recovered; only the differing one is updated.
func (d *demo) addUsersMadeElsewhere() (string, error) {
	p := filepath.Join(d.dir, "users-renamed.csv")
	b, err := os.ReadFile(p)
	if err != nil {
		return "", err
	}
	rows := []string{
		"usr_900001,putu.ayu@example.co.id,Putu Ayu Wulandari,,,pro,Denpasar,partner",
		"usr_900002,hendra.wijaya@example.co.id,Hendra Wijaya,,,free,Medan,partner",
		"usr_900003,sri.rahayu@example.co.id,Sri Rahayu,,,business,Surabaya,partner",
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for i, name := range []string{"Putu Ayu Wulandari", "H. Wijaya"} {
		f := strings.Split(rows[i], ",")
		_, err := d.client.Customers.Create(ctx, plugipay.CustomerParams{
			ExternalID: plugipay.String(f[0]),
			Email:      plugipay.String(f[1]),
			Name:       plugipay.String(name),
			Metadata:   map[string]string{"plan": f[5], "city": f[6], "signup_source": f[7]},
		}, fmt.Sprintf("idem_demo_other_tool_%d", i))
		if err != nil {
			return "", fmt.Errorf("create a customer as another tool: %w", err)
		}
	}
	d.say("another tool created usr_900001 (as in the CRM) and usr_900002 (named \"H. Wijaya\")\n")
	out := filepath.Join(d.dir, "users-more.csv")
	return out, os.WriteFile(out, []byte(strings.TrimRight(string(b), "\n")+"\n"+strings.Join(rows, "\n")+"\n"), 0o600)
}

// renameOne copies the sample CSV with the first user's name changed.
func (d *demo) renameOne() (string, error) {
	b, err := os.ReadFile(d.csv)
	if err != nil {
		return "", err
	}
	lines := strings.SplitN(string(b), "\n", 3)
	if len(lines) < 3 {
		return "", fmt.Errorf("%s has no data rows", d.csv)
	}
	header := strings.Split(strings.TrimSpace(strings.TrimPrefix(lines[0], "\uFEFF")), ",")
	col := -1
	for i, h := range header {
		if h == "full_name" {
			col = i
		}
	}
	fields := strings.Split(lines[1], ",")
	if col < 0 || col >= len(fields) || strings.Contains(lines[1], `"`) {
		return "", fmt.Errorf("%s: cannot find a simple first row with a full_name column", d.csv)
	}
	d.say("renaming %s: %q -> %q\n", fields[0], fields[col], fields[col]+" Renamed")
	fields[col] += " Renamed"
	lines[1] = strings.Join(fields, ",")
	p := filepath.Join(d.dir, "users-renamed.csv")
	return p, os.WriteFile(p, []byte(strings.Join(lines, "\n")), 0o600)
}

// writes is how many creates and updates the emulator has answered (put:
// the Pin-style API's update; del: deletes; get: reads, which are not
// writes and not compared by ==, see changed).
type writes struct{ post, patch, put, del, get int64 }

// changed reports whether any write happened between w and after.
func (w writes) changed(after writes) bool {
	return w.post != after.post || w.patch != after.patch || w.put != after.put || w.del != after.del
}

func (d *demo) writes() (writes, error) {
	resp, err := http.Get(d.origin + "/metrics")
	if err != nil {
		return writes{}, fmt.Errorf("read emulator metrics: %w", err)
	}
	defer resp.Body.Close()
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(resp.Body)
	if err != nil {
		return writes{}, fmt.Errorf("parse emulator metrics: %w", err)
	}
	var w writes
	if f, ok := families["plugipay_mock_requests_total"]; ok {
		for _, m := range f.GetMetric() {
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			n := int64(m.GetCounter().GetValue())
			switch labels["method"] {
			case http.MethodPost:
				w.post += n
			case http.MethodPatch:
				w.patch += n
			case http.MethodPut:
				w.put += n
			case http.MethodDelete:
				w.del += n
			case http.MethodGet:
				w.get += n
			}
		}
	}
	return w, nil
}

// plugipayCustomers is customers for runPasses: their number, and the
// check that no externalId has two.
func (d *demo) plugipayCustomers() (int, func(), error) {
	n, dups, err := d.customers()
	return n, func() { d.expect(dups == 0, "no duplicate externalId in Plugipay (%d)", dups) }, err
}

// customers walks the emulator's customer list and counts duplicates.
func (d *demo) customers() (n, dups int, err error) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	seen := map[string]bool{}
	for c, err := range d.client.Customers.ListAll(ctx, plugipay.ListParams{Limit: 100}) {
		if err != nil {
			return 0, 0, fmt.Errorf("list customers: %w", err)
		}
		n++
		if seen[c.ExternalID] {
			dups++
		}
		seen[c.ExternalID] = true
	}
	return n, dups, nil
}
