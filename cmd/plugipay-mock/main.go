// Command plugipay-mock serves the strict Plugipay customer API emulator
// (package emulator) over HTTP, for local development, scripts and
// end-to-end tests of the sync.
//
//	plugipay-mock --addr 127.0.0.1:0 --addr-file /tmp/mock.url --state /tmp/mock.jsonl
//
// The secret comes from --secret or, when the flag is not given, from
// PLUGIPAY_SECRET; it is never logged.
//
// Platform mode adds a platform key acting for many merchant workspaces
// through X-Plugipay-On-Behalf-Of, each with its own customers and limits:
//
//	PLUGIPAY_PLATFORM_SECRET=sk_plat plugipay-mock --platform-key-id key_plat --accounts-file tenants.txt --auto-connect --request-log 100000
//
// With --api paygate or --api pin it serves the PayGate-style fake
// (destination/paygate/fake, at /v1) or the Pin-style fake
// (destination/pin/fake, at /1) instead, with the secret key from --secret
// or PAYGATE_SECRET_KEY / PIN_SECRET_KEY; --seed-pin-csv fills the Pin fake
// with customers made at checkout. --addr-file then receives the API's base
// URL, /v1 or /1 included, which is what plugipay-sync's base_url wants
// (for Plugipay that is the origin). Every API serves GET /metrics at the
// origin.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"go.uber.org/zap"

	paygatefake "github.com/plugipay-sync/plugipay-sync/destination/paygate/fake"
	pinfake "github.com/plugipay-sync/plugipay-sync/destination/pin/fake"
	"github.com/plugipay-sync/plugipay-sync/plugipay/emulator"
)

// Defaults of the command-line flags.
const (
	DefaultAddr   = "127.0.0.1:8787"
	DefaultKeyID  = "key_demo"
	DefaultSecret = "sk_demo_secret"
	EnvSecret     = "PLUGIPAY_SECRET"
	// EnvPlatformSecret is read for --platform-secret when the flag is not
	// given.
	EnvPlatformSecret = "PLUGIPAY_PLATFORM_SECRET"
	// EnvPayGateSecret and EnvPinSecret are read with --api paygate and
	// --api pin when --secret is not given.
	EnvPayGateSecret = "PAYGATE_SECRET_KEY"
	EnvPinSecret     = "PIN_SECRET_KEY"
	// DefaultTestSecret is the secret of --api paygate and --api pin when
	// neither --secret nor the environment gives one.
	DefaultTestSecret = "sk_test_demo_secret"
	ShutdownTimeout   = 10 * time.Second
	readHeaderTimeout = 10 * time.Second
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	os.Exit(run(ctx, stop, os.Args[1:]))
}

// run maps the program's outcome to an exit code: 0 ok, 1 runtime error, 2
// usage error.
func run(ctx context.Context, stop func(), args []string) int {
	m := NewMain()
	if err := m.ParseFlags(ctx, args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		fmt.Fprintln(os.Stderr, "plugipay-mock:", err)
		return 2
	}
	logger, err := zap.NewProduction()
	if err != nil {
		fmt.Fprintln(os.Stderr, "plugipay-mock: logger:", err)
		return 1
	}
	defer func() { _ = logger.Sync() }()
	m.Logger = logger
	if err := m.Run(ctx); err != nil {
		logger.Error("start failed", zap.Error(err))
		return 1
	}
	<-ctx.Done()
	stop() // a second signal now kills the process
	logger.Info("shutting down")
	if err := m.Close(); err != nil {
		logger.Error("shutdown failed", zap.Error(err))
		return 1
	}
	return 0
}

// Main is the program: flags, the emulator and its HTTP server.
type Main struct {
	// API is the API served: APIPlugipay (default), APIPayGate or APIPin.
	API string
	// Addr is the listen address; port 0 picks a free port.
	Addr string
	// AddrFile, when set, receives URL once listening.
	AddrFile string
	// KeyID and Secret are the one API key the emulator accepts. With
	// APIPayGate and APIPin, Secret is the one (test) secret key accepted
	// and KeyID is unused.
	KeyID, Secret string
	// Options configure the emulator (Keys is filled from KeyID and Secret).
	// With APIPayGate and APIPin, Options.Seed and Options.Faults' rates
	// that those fakes know are used (see fakeFaults).
	Options emulator.Options
	// RequestsPerSecond is the per-key limit of the PayGate and Pin fakes
	// (0 disables it).
	RequestsPerSecond int
	// SeedPinCSV, with APIPin, is a CSV file of customers made at checkout
	// (header email,first_name,last_name; optional token) seeded before
	// serving.
	SeedPinCSV string
	// WebhookURL and WebhookSecret, when the URL is set, make the Plugipay
	// emulator deliver signed customer events there (emulator.SetWebhook).
	// The secret comes from $PLUGIPAY_WEBHOOK_SECRET when the flag is not
	// given.
	WebhookURL, WebhookSecret string

	// PlatformKeyID, when set, adds a platform key (PlatformSecret) that
	// acts for the Accounts (and, with AutoConnect, any acc_) through
	// X-Plugipay-On-Behalf-Of (emulator.PlatformKey).
	PlatformKeyID, PlatformSecret string
	// Accounts are the connected workspaces: --accounts (comma-separated)
	// plus the lines of --accounts-file.
	Accounts    []string
	AutoConnect bool

	// Logger logs lifecycle events; nil means no logging.
	Logger *zap.Logger
	// Getenv reads the environment; nil means os.Getenv.
	Getenv func(string) string
	// Stderr receives usage output; nil means os.Stderr.
	Stderr io.Writer

	// URL is the base URL being served, set by Run: the origin for
	// Plugipay, the origin plus /v1 (PayGate) or /1 (Pin) otherwise.
	URL string
	// Origin is "http://HOST:PORT", where /metrics is served; set by Run.
	Origin string

	emu     *emulator.Server
	paygate *paygatefake.Server
	pin     *pinfake.Server
	srv     *http.Server
	ln      net.Listener
	// done is closed when Serve returns; serveErr holds its error.
	done     chan struct{}
	serveErr error
}

// NewMain returns a Main with the defaults.
func NewMain() *Main {
	return &Main{API: APIPlugipay, Addr: DefaultAddr, KeyID: DefaultKeyID, Secret: DefaultSecret, Logger: zap.NewNop()}
}

// ParseFlags reads args (without the program name) into m and validates them.
func (m *Main) ParseFlags(_ context.Context, args []string) error {
	getenv := m.Getenv
	if getenv == nil {
		getenv = os.Getenv
	}
	fs := flag.NewFlagSet("plugipay-mock", flag.ContinueOnError)
	if m.Stderr != nil {
		fs.SetOutput(m.Stderr)
	}
	o := &m.Options
	fs.StringVar(&m.API, "api", m.API, "API to serve: plugipay, paygate (PayGate-style fake at /v1) or pin (Pin-style fake at /1)")
	fs.StringVar(&m.Addr, "addr", m.Addr, "listen address (port 0 picks a free port)")
	fs.StringVar(&m.AddrFile, "addr-file", "", "after binding, write the base URL to this file (atomically): http://HOST:PORT, plus /v1 or /1 for paygate and pin")
	fs.StringVar(&m.KeyID, "key-id", m.KeyID, "API key id the emulator accepts (plugipay)")
	// The default shown by --help is the public demo secret, never $PLUGIPAY_SECRET.
	fs.StringVar(&m.Secret, "secret", m.Secret, "API secret for --key-id; $"+EnvSecret+" is used when the flag is not given.\n"+
		"With --api paygate (an sk_test_ key) or pin (a test key): $"+EnvPayGateSecret+" or $"+EnvPinSecret+", else "+DefaultTestSecret)
	fs.IntVar(&m.RequestsPerSecond, "requests-per-second", 0, "paygate, pin: per-key request limit per second (0 disables)")
	fs.StringVar(&m.WebhookURL, "webhook-url", "", "plugipay: deliver signed customer.created/updated/deleted events to this URL (e.g. http://127.0.0.1:9464/webhooks/plugipay)")
	fs.StringVar(&m.WebhookSecret, "webhook-secret", "", "plugipay: the endpoint secret the events are signed with; $PLUGIPAY_WEBHOOK_SECRET when not given (never a default shown here)")
	fs.StringVar(&m.SeedPinCSV, "seed-pin-csv", "", "pin: seed customers made at checkout from this CSV (header email,first_name,last_name[,token])")
	fs.StringVar(&o.AccountID, "account-id", emulator.DefaultAccountID, "workspace id reported in accountId and arn (the platform's own with --platform-key-id)")
	fs.StringVar(&m.PlatformKeyID, "platform-key-id", "", "plugipay: also accept this platform key, which acts for connected workspaces through X-Plugipay-On-Behalf-Of")
	fs.StringVar(&m.PlatformSecret, "platform-secret", "", "secret of --platform-key-id; $"+EnvPlatformSecret+" when not given (no default)")
	var accounts, accountsFile string
	fs.StringVar(&accounts, "accounts", "", "workspaces connected to --platform-key-id, comma-separated (acc_a,acc_b)")
	fs.StringVar(&accountsFile, "accounts-file", "", "file of workspaces connected to --platform-key-id, one per line (# comments)")
	fs.BoolVar(&m.AutoConnect, "auto-connect", false, "connect any acc_ to --platform-key-id on first use, with an empty workspace")
	fs.IntVar(&o.RequestLog, "request-log", 0, "keep the last N write requests (account, client, interval, status) for overlap checks; 0 keeps none")
	fs.IntVar(&o.ReadRate, "read-rate", emulator.DefaultReadRate, "per-key GET limit in requests/s (0 disables)")
	fs.IntVar(&o.WriteRate, "write-rate", emulator.DefaultWriteRate, "per-key POST/PATCH limit in requests/s (0 disables)")
	fs.BoolVar(&o.Legacy, "legacy", false, "emulate an old API version whose list ignores the externalId filter")
	fs.StringVar(&o.StatePath, "state", "", "persist customers and idempotency keys in this JSON-lines file")
	fs.DurationVar(&o.Faults.Latency, "latency", 0, "fixed latency added to every API request")
	fs.DurationVar(&o.Faults.LatencyJitter, "latency-jitter", 0, "random extra latency, uniform in [0, value)")
	fs.Float64Var(&o.Faults.ErrorRate, "error-rate", 0, "fraction of API requests answered 500/502/503 without executing")
	fs.Float64Var(&o.Faults.DropRate, "drop-rate", 0, "fraction of API requests whose connection is dropped without executing")
	fs.Float64Var(&o.Faults.TimeoutRate, "timeout-rate", 0, "fraction of writes executed but never answered (executed then timed out)")
	fs.DurationVar(&o.Faults.HangTimeout, "hang-timeout", 0, "how long a timed-out write holds the connection (0 = "+emulator.DefaultHangTimeout.String()+")")
	fs.IntVar(&o.Faults.RetryAfter, "retry-after", 1, "Retry-After seconds of injected 503s")
	fs.Uint64Var(&o.Seed, "seed", 0, "seed of the fault sequence (0 = random)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments: %q", fs.Args())
	}
	given := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { given[f.Name] = true })
	if !given["webhook-secret"] {
		m.WebhookSecret = getenv("PLUGIPAY_WEBHOOK_SECRET")
	}
	if !given["platform-secret"] && m.PlatformKeyID != "" {
		m.PlatformSecret = getenv(EnvPlatformSecret)
	}
	if err := m.readAccounts(accounts, accountsFile); err != nil {
		return err
	}
	env := EnvSecret
	switch m.API {
	case APIPlugipay:
	case APIPayGate, APIPin:
		env = EnvPayGateSecret
		if m.API == APIPin {
			env = EnvPinSecret
		}
		if !given["secret"] {
			m.Secret = DefaultTestSecret
		}
		if err := checkAPIFlags(m.API, given); err != nil {
			return err
		}
	default:
		return fmt.Errorf("--api: must be plugipay, paygate or pin (got %q)", m.API)
	}
	if v := getenv(env); v != "" && !given["secret"] {
		m.Secret = v
	}
	if m.API == APIPlugipay {
		for _, name := range []string{"requests-per-second", "seed-pin-csv"} {
			if given[name] {
				return fmt.Errorf("--%s: not with --api plugipay (use --read-rate, --write-rate)", name)
			}
		}
	}
	return m.validate()
}

func (m *Main) validate() error {
	o := m.Options
	switch {
	case m.API == APIPayGate && !strings.HasPrefix(m.Secret, paygateTestPrefix):
		// Never echo the secret.
		return fmt.Errorf("--secret / $%s: the PayGate fake takes a test key (%s...)", EnvPayGateSecret, paygateTestPrefix)
	case m.RequestsPerSecond < 0:
		return fmt.Errorf("--requests-per-second: must be >= 0 (got %d)", m.RequestsPerSecond)
	case m.Addr == "":
		return errors.New("--addr: must not be empty")
	case m.KeyID == "":
		return errors.New("--key-id: must not be empty")
	case m.Secret == "":
		return errors.New("--secret: must not be empty")
	case o.ReadRate < 0:
		return fmt.Errorf("--read-rate: must be >= 0 (got %d)", o.ReadRate)
	case o.WriteRate < 0:
		return fmt.Errorf("--write-rate: must be >= 0 (got %d)", o.WriteRate)
	case o.RequestLog < 0:
		return fmt.Errorf("--request-log: must be >= 0 (got %d)", o.RequestLog)
	case m.PlatformKeyID == "" && (len(m.Accounts) > 0 || m.AutoConnect || m.PlatformSecret != ""):
		return errors.New("--accounts, --accounts-file, --auto-connect, --platform-secret: need --platform-key-id")
	case m.PlatformKeyID != "" && m.PlatformKeyID == m.KeyID:
		return errors.New("--platform-key-id: must differ from --key-id")
	case m.PlatformKeyID != "" && m.PlatformSecret == "":
		return fmt.Errorf("--platform-secret / $%s: required with --platform-key-id", EnvPlatformSecret)
	case o.Faults.Latency < 0 || o.Faults.LatencyJitter < 0 || o.Faults.HangTimeout < 0:
		return errors.New("--latency, --latency-jitter, --hang-timeout: must be >= 0")
	}
	for _, r := range []struct {
		name string
		v    float64
	}{{"--error-rate", o.Faults.ErrorRate}, {"--drop-rate", o.Faults.DropRate}, {"--timeout-rate", o.Faults.TimeoutRate}} {
		if r.v < 0 || r.v > 1 {
			return fmt.Errorf("%s: must be in [0, 1] (got %g)", r.name, r.v)
		}
	}
	if sum := o.Faults.ErrorRate + o.Faults.DropRate + o.Faults.TimeoutRate; sum > 1 {
		return fmt.Errorf("--error-rate + --drop-rate + --timeout-rate: must be at most 1 (got %g)", sum)
	}
	return nil
}

// Run opens the emulator, binds the listener, writes the address file and
// starts serving in the background. Close stops it.
func (m *Main) Run(_ context.Context) error {
	log := m.Logger
	if log == nil {
		log = zap.NewNop()
	}
	if m.API == APIPayGate || m.API == APIPin {
		return m.runFake(log)
	}
	opts := m.Options
	opts.Keys = map[string]string{m.KeyID: m.Secret}
	if m.PlatformKeyID != "" {
		opts.PlatformKeys = map[string]emulator.PlatformKey{m.PlatformKeyID: {
			Secret: m.PlatformSecret, Accounts: m.Accounts, AutoConnect: m.AutoConnect}}
	}
	emu, err := emulator.Open(opts)
	if err != nil {
		return fmt.Errorf("open emulator: %w", err)
	}
	if err := m.serve(log, "", emu); err != nil {
		_ = emu.Close()
		return err
	}
	m.emu = emu
	if m.WebhookURL != "" {
		emu.SetWebhook(m.WebhookURL, m.WebhookSecret)
		log.Info("delivering webhooks", zap.String("url", m.WebhookURL)) // never the secret
	}
	log.Info("plugipay emulator listening", append([]zap.Field{
		zap.String("url", m.URL),
		zap.String("keyId", m.KeyID), // never the secret
		zap.String("accountId", opts.AccountID),
		zap.Int("readRate", opts.ReadRate),
		zap.Int("writeRate", opts.WriteRate),
		zap.Bool("legacy", opts.Legacy),
		zap.String("state", opts.StatePath),
		zap.String("platformKeyId", m.PlatformKeyID), // never the secret
		zap.Int("accounts", len(m.Accounts)),
		zap.Bool("autoConnect", m.AutoConnect),
		zap.Int("requestLog", opts.RequestLog),
	}, faultFields(opts)...)...)
	return nil
}

// readAccounts fills m.Accounts from --accounts (comma-separated) and the
// lines of --accounts-file (blank lines and # comments skipped), checking
// each id.
func (m *Main) readAccounts(list, file string) error {
	var accs []string
	for _, a := range strings.Split(list, ",") {
		if a = strings.TrimSpace(a); a != "" {
			accs = append(accs, a)
		}
	}
	flagName := "--accounts"
	if file != "" {
		b, err := os.ReadFile(file)
		if err != nil {
			return fmt.Errorf("--accounts-file: %w", err)
		}
		for _, line := range strings.Split(string(b), "\n") {
			if line = strings.TrimSpace(line); line != "" && !strings.HasPrefix(line, "#") {
				accs = append(accs, line)
			}
		}
		flagName = "--accounts / --accounts-file"
	}
	for _, a := range accs {
		if err := emulator.CheckAccountID(a); err != nil {
			return fmt.Errorf("%s: %w", flagName, err)
		}
	}
	m.Accounts = accs
	return nil
}

// serve binds m.Addr, sets m.Origin and m.URL (the origin plus basePath),
// writes m.URL to --addr-file and serves handler in the background until
// Close.
func (m *Main) serve(log *zap.Logger, basePath string, handler http.Handler) error {
	ln, err := net.Listen("tcp", m.Addr)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", m.Addr, err)
	}
	m.ln = ln
	m.Origin = "http://" + ln.Addr().String()
	m.URL = m.Origin + basePath
	if m.AddrFile != "" {
		if err := writeFileAtomic(m.AddrFile, []byte(m.URL+"\n")); err != nil {
			_ = ln.Close()
			return fmt.Errorf("write --addr-file: %w", err)
		}
	}
	m.srv = &http.Server{Handler: handler, ReadHeaderTimeout: readHeaderTimeout}
	m.done = make(chan struct{})
	go func() {
		defer close(m.done)
		if err := m.srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
			m.serveErr = err
			log.Error("serve failed", zap.Error(err))
		}
	}()
	return nil
}

// faultFields are the startup log's fields of the injected faults and
// their seed.
func faultFields(o emulator.Options) []zap.Field {
	return []zap.Field{
		zap.Duration("latency", o.Faults.Latency),
		zap.Float64("errorRate", o.Faults.ErrorRate),
		zap.Float64("dropRate", o.Faults.DropRate),
		zap.Float64("timeoutRate", o.Faults.TimeoutRate),
		zap.Uint64("seed", o.Seed),
	}
}

// Emulator returns the running emulator (nil before Run), so tests can
// inspect its state or change its faults.
func (m *Main) Emulator() *emulator.Server { return m.emu }

// Close shuts the server down gracefully, waiting up to ShutdownTimeout for
// in-flight requests, then closes the emulator's state file.
func (m *Main) Close() error {
	if m.srv == nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), ShutdownTimeout)
	defer cancel()
	var errs []error
	if err := m.srv.Shutdown(ctx); err != nil {
		errs = append(errs, fmt.Errorf("shutdown: %w", err))
		_ = m.srv.Close()
	}
	<-m.done
	if m.serveErr != nil {
		errs = append(errs, fmt.Errorf("serve: %w", m.serveErr))
	}
	if m.emu != nil {
		if err := m.emu.Close(); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// writeFileAtomic writes data to a temporary file next to path and renames
// it over path, so a reader never sees a partial address.
func writeFileAtomic(path string, data []byte) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), filepath.Base(path)+".tmp-*")
	if err != nil {
		return fmt.Errorf("create temp: %w", err)
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(data); err != nil {
		_ = tmp.Close()
		return fmt.Errorf("write %s: %w", tmp.Name(), err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("close %s: %w", tmp.Name(), err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("rename to %s: %w", path, err)
	}
	return nil
}
