package main

import (
	"cmp"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promauto"
	"go.uber.org/zap"

	"github.com/plugipay-sync/plugipay-sync/crm"
	"github.com/plugipay-sync/plugipay-sync/crm/hubspot"
	"github.com/plugipay-sync/plugipay-sync/crm/sqlsrc"
	"github.com/plugipay-sync/plugipay-sync/destination/paygate"
	"github.com/plugipay-sync/plugipay-sync/destination/pin"
	plugipaydest "github.com/plugipay-sync/plugipay-sync/destination/plugipay"
	"github.com/plugipay-sync/plugipay-sync/internal/transport"
	"github.com/plugipay-sync/plugipay-sync/state"
	"github.com/plugipay-sync/plugipay-sync/sync"
)

var errHelp = errors.New("help requested")

// Main is the program: ParseFlags, then Run, then Close. Tests drive it
// in-process the same way main does.
type Main struct {
	ConfigPath  string
	Once        bool
	ShowVersion bool
	NoExpandEnv bool
	LogLevel    string
	LogFormat   string
	HealthCheck string
	// LogPII logs emails and phone numbers unmasked (for debugging).
	LogPII bool
	// AllowMassArchive lifts sync.max_archive_ratio for this run.
	AllowMassArchive bool
	// WaitLock is how long a writer waits for another process's writer
	// lock on the state DB; 0 fails at once (ExitLocked).
	WaitLock time.Duration
	// DryRun (with Once) prints the plan and writes nothing; Output is its
	// format, table or json.
	DryRun bool
	Output string
	// planDir holds the throwaway state DB of a dry run without one.
	planDir string

	// LookupEnv resolves ${VAR} references; os.LookupEnv by default.
	LookupEnv func(string) (string, bool)
	// Ready, if set, is called with the metrics listener's address once
	// the daemon is serving (tests use it with listen ":0").
	Ready func(addr string)
	// RealtimeReady, if set, is called with the realtime listener's
	// address (realtime.listen) once it is serving, after Ready.
	RealtimeReady func(addr string)
	// ProgressInterval is how often a --once run off a terminal logs its
	// progress; 0 means DefaultProgressInterval.
	ProgressInterval time.Duration
	// Command names the running command in the writer lock's holder
	// record; empty means the daemon or --once.
	Command string

	stdout, stderr io.Writer
	// term is the progress line when stdout is a terminal, else nil.
	term *termLine

	cfg   Config
	log   *zap.Logger
	reg   *prometheus.Registry
	store *state.DB
	// lock is the state DB's writer lock, held by every command that may
	// write (see lockState) until Close.
	lock *state.Lock
	// health is what /readyz and the freshness gauges know.
	health *health
	rec    *sync.Reconciler
	// platform runs the tenants in platform mode (tenants:), else nil;
	// tenantHook, if set (tests), becomes its hook (see Platform.hook).
	platform *Platform
	// statePool is the connection pool every tenant's store shares, in
	// platform mode on PostgreSQL state (state.max_conns).
	statePool *state.PostgresPool
	// stateLocker holds every tenant's writer lock on one session, in
	// platform mode on PostgreSQL state.
	stateLocker *state.PostgresLocker
	tenantHook  func(tenantID string) func()
	// userAgent, if set, is the Plugipay client's User-Agent: a replica
	// of platform mode names itself (see serveFleet).
	userAgent string
	// replicaID names this process among the replicas of platform mode
	// (hostname-pid); it is River's client id and in the User-Agent.
	replicaID string
	gauge     *storeGauges
	// syncMetrics are shared by every reconciler built (see reload).
	syncMetrics   *sync.Metrics
	verifyMetrics *sync.VerifyMetrics
	// users serialises each user's writes across the reconcilers built
	// and the event path (issue 17).
	users *sync.Users
	// webhook receives Plugipay's events once the daemon started it
	// (webhook.go); webhookMetrics count them.
	webhook        atomic.Pointer[webhookReceiver]
	webhookMetrics map[string]prometheus.Counter
	reloadOK       prometheus.Gauge
	reloadTime     prometheus.Gauge
}

// NewMain returns a Main writing its summary to stdout and logs to stderr.
func NewMain(stdout, stderr io.Writer) *Main {
	m := &Main{LookupEnv: os.LookupEnv, stdout: stdout, stderr: stderr}
	m.attachTerminal()
	return m
}

// ParseFlags reads the command line.
func (m *Main) ParseFlags(args []string) error {
	fs := flag.NewFlagSet("plugipay-sync", flag.ContinueOnError)
	m.commonFlags(fs)
	fs.BoolVar(&m.Once, "once", false, "run one sync and exit (exit 0 all synced, 2 some records rejected or failed, 1 could not run)")
	fs.BoolVar(&m.ShowVersion, "version", false, "print the version and exit")
	fs.BoolVar(&m.AllowMassArchive, "allow-mass-archive", false, "with sync.deletion: archive, archive even more than sync.max_archive_ratio of the known customers in this run")
	fs.BoolVar(&m.DryRun, "dry-run", false, "with --once: print what the run would do (per action counts, field-level diffs) and write nothing to Plugipay or the state DB")
	fs.StringVar(&m.Output, "output", planOutputTable, "format of --dry-run: table or json (JSON lines)")
	fs.StringVar(&m.HealthCheck, "healthcheck", "", "GET this URL and exit 0 if it answers 200, else 1 (the image's HEALTHCHECK; needs no curl)")
	m.lockFlag(fs)
	fs.Usage = func() {
		printCommands(fs.Output())
		fmt.Fprintf(fs.Output(), "\nFlags of the daemon and --once:\n")
		fs.PrintDefaults()
	}
	helpToStdout(fs, args, m.stdout)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return errHelp
		}
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unknown command or argument %q; see --help", fs.Arg(0))
	}
	if m.DryRun && !m.Once {
		return errors.New("--dry-run needs --once")
	}
	if m.AllowMassArchive && !m.Once {
		// A daemon would lift the safety valve for every scheduled run.
		return errors.New("--allow-mass-archive needs --once: it lifts the safety valve for one run")
	}
	return validOutput(m.Output)
}

// Run runs the program and returns its exit code. Errors that stop it are
// returned too, for the caller to print.
func (m *Main) Run(ctx context.Context) (int, error) {
	if m.ShowVersion {
		fmt.Fprintf(m.stdout, "plugipay-sync %s (commit %s)\n", Version, Commit)
		return ExitOK, nil
	}
	if m.HealthCheck != "" {
		return healthCheck(ctx, m.HealthCheck)
	}
	if err := m.open(ctx); err != nil {
		m.Close()
		return exitCode(err), err
	}
	defer m.Close()
	if m.platform != nil {
		return m.runPlatform(ctx)
	}
	if m.Once && m.DryRun {
		return m.runPlan(ctx)
	}
	if m.Once {
		return m.runOnce(ctx)
	}
	if err := m.serve(ctx); err != nil {
		return ExitFailed, err
	}
	return ExitOK, nil
}

// open loads the config and builds every component, injecting them by
// hand. Its errors carry their exit code (see exitCode).
func (m *Main) open(ctx context.Context) error {
	if err := m.loadConfig(); err != nil {
		return withExit(ExitConfig, err)
	}
	if m.cfg.platform() {
		return m.openPlatform()
	}
	if m.DryRun && m.Once {
		if err := m.openPlanStore(ctx); err != nil {
			return err
		}
	} else if err := m.openStore(ctx); err != nil {
		return err
	}
	return withExit(ExitConfig, m.openReconciler())
}

// lockFlag registers --wait-lock on a command that writes.
func (m *Main) lockFlag(fs *flag.FlagSet) {
	fs.DurationVar(&m.WaitLock, "wait-lock", 0, "if another process holds the state DB's writer lock, wait up to this long for it (e.g. 10m); 0 exits at once with code 5")
}

// lockState takes the writer lock of the state DB at path for command, so
// that no two processes write through one state DB (issue 14). Every
// command that may write calls it before opening the DB.
func (m *Main) lockState(ctx context.Context, path, command string) error {
	if m.lock != nil {
		return nil
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return withExit(ExitFailed, fmt.Errorf("state.path %s: %w", path, err))
	}
	l, err := state.AcquireLock(ctx, path, m.WaitLock, command)
	return m.tookLock(l, err, "state.path "+path)
}

// tookLock keeps l as the process's writer lock, or maps the error of
// taking it to its exit code (ExitLocked when another process holds it),
// prefixed with key, the config key that named the store.
func (m *Main) tookLock(l *state.Lock, err error, key string) error {
	if err != nil {
		code := ExitFailed
		if errors.Is(err, state.ErrLocked) {
			code = ExitLocked
		}
		return withExit(code, fmt.Errorf("%s: %w", key, err))
	}
	m.lock = l
	return nil
}

// loadConfig reads and validates the config and builds the logger.
func (m *Main) loadConfig() error {
	cfg, err := m.readConfig()
	if err != nil {
		return err
	}
	m.cfg = cfg
	if m.log, err = newLogger(cfg.Log, m.stderr, m.LogPII); err != nil {
		return err
	}
	for _, d := range cfg.Deprecations {
		m.log.Warn("deprecated config", zap.String("config", m.ConfigPath), zap.String("what", d))
	}
	return nil
}

// readConfig reads and validates the config file with the command line's
// overrides applied. The daemon calls it again on SIGHUP.
func (m *Main) readConfig() (Config, error) {
	lookup := m.LookupEnv
	if m.NoExpandEnv {
		lookup = nil
	}
	cfg, err := ReadConfigFile(m.ConfigPath, lookup)
	if err != nil {
		return Config{}, err
	}
	if m.LogLevel != "" {
		cfg.Log.Level = m.LogLevel
	}
	if m.LogFormat != "" {
		cfg.Log.Format = m.LogFormat
	}
	if err := cfg.Validate(); err != nil {
		return Config{}, err
	}
	return cfg, nil
}

// openStore takes the writer lock and opens the state DB named by the
// config.
func (m *Main) openStore(ctx context.Context) error {
	if m.cfg.platform() {
		return withExit(ExitConfig, errors.New("tenants: this command works on one workspace's state DB; in platform mode use the daemon, --once or status [--tenant ID]"))
	}
	if m.cfg.State.Postgres() {
		return m.openPostgresStore(ctx)
	}
	if err := m.lockState(ctx, m.cfg.State.Path, m.command()); err != nil {
		return err
	}
	var err error
	if m.store, err = state.Open(ctx, m.cfg.State.Path); err != nil {
		return withExit(ExitFailed, fmt.Errorf("state.path: %w", err))
	}
	if err := m.store.BindDestination(ctx, destinationIdentity(m.cfg)); err != nil {
		return withExit(ExitConfig, fmt.Errorf("state.path %s: %w", m.cfg.State.Path, err))
	}
	return nil
}

// command names this process in the lock file (no secrets: flags only).
func (m *Main) command() string {
	if m.Command != "" {
		return m.Command
	}
	if m.Once {
		return "plugipay-sync --once"
	}
	return "plugipay-sync daemon"
}

// openReconciler builds the metrics registry, the source, the Plugipay
// client and the reconciler.
func (m *Main) openReconciler() error {
	m.openMetrics()
	rec, err := m.buildReconciler(m.cfg)
	if err != nil {
		return err
	}
	m.rec = rec
	return nil
}

// openMetrics builds the registry and the metrics every mode shares.
func (m *Main) openMetrics() {
	m.reg = prometheus.NewRegistry()
	m.reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	buildInfo := prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "plugipay_sync_build_info",
		Help: "Always 1; the labels say which build is running.",
	}, []string{"version", "commit", "goversion"})
	m.reg.MustRegister(buildInfo)
	buildInfo.WithLabelValues(Version, Commit, goVersion()).Set(1)
	m.gauge = newStoreGauges(m.reg)
	m.syncMetrics = sync.NewMetrics(m.reg)
	m.users = sync.NewUsers()
	m.verifyMetrics = sync.NewVerifyMetrics(m.reg)
	m.webhookMetrics = newWebhookMetrics(m.reg)
	m.health = newHealth(m.reg, time.Now())
	m.health.setSchedule(m.cfg.Schedule, m.cfg.Health.StaleAfterRuns, time.Now())
	m.reloadOK = promauto.With(m.reg).NewGauge(prometheus.GaugeOpts{
		Name: "plugipay_sync_config_last_reload_successful",
		Help: "1 if the last config reload (SIGHUP) succeeded or none was tried, 0 if the new config was rejected and the old one kept.",
	})
	m.reloadOK.Set(1)
	m.reloadTime = promauto.With(m.reg).NewGauge(prometheus.GaugeOpts{
		Name: "plugipay_sync_config_last_reload_success_timestamp_seconds",
		Help: "Unix time the config was last loaded successfully (start or SIGHUP).",
	})
	m.reloadTime.SetToCurrentTime()
}

// buildReconciler builds the source, the Plugipay client and a reconciler
// for cfg, reusing the metrics registered by openReconciler, so a config
// reload can build a new one beside the running one.
func (m *Main) buildReconciler(cfg Config) (*sync.Reconciler, error) {
	return m.buildReconcilerWith(cfg, m.store, m.users, m.log)
}

// buildReconcilerWith builds a reconciler for cfg on store, serialising
// writes per user through users and logging to log: the one workspace's
// (buildReconciler) or one tenant's (Platform).
func (m *Main) buildReconcilerWith(cfg Config, store *state.DB, users *sync.Users, log *zap.Logger) (*sync.Reconciler, error) {
	src, err := newSourceWith(cfg.CRM, sourceEnv{wm: watermarks{db: store, dryRun: m.DryRun},
		reg: m.reg, log: log.Named("hubspot")})
	if err != nil {
		return nil, err
	}
	dst, err := m.buildDestination(cfg, log)
	if err != nil {
		return nil, err
	}
	return sync.New(src, dst, store, sync.Options{
		Mode:         cfg.Sync.mode(dst.Capabilities()),
		Concurrency:  cfg.Sync.Concurrency,
		BatchSize:    cfg.Sync.BatchSize,
		WriteTimeout: cfg.Sync.RecordTimeout,
		RetryMin:     cfg.Sync.RetryMin,
		RetryMax:     cfg.Sync.RetryMax,
		Logger:       log.Named("sync"),
		Metrics:      m.syncMetrics,
		Managed:      managedFields(cfg),

		Deletion:         cfg.Sync.Deletion,
		MaxArchiveRatio:  cfg.Sync.MaxArchiveRatio,
		AllowMassArchive: m.AllowMassArchive,
		BreakAfter:       cfg.Sync.BreakAfter,
		SpillDir:         spillDir(cfg.State),
		Users:            users,
		MarkEvent:        func(ctx context.Context) context.Context { return transport.WithLane(ctx, transport.LaneEvent) },
		AuditValues:      cfg.Audit.Values,
	}), nil
}

// buildDestination builds the client of the configured destination, logging
// to log's children.
func (m *Main) buildDestination(cfg Config, log *zap.Logger) (sync.Destination, error) {
	switch d := cfg.Destination; d.Type {
	case DestPayGate:
		a := d.PayGate.APIConfig
		dst, err := paygate.New(paygate.Options{BaseURL: a.BaseURL, SecretKey: a.SecretKey,
			ExternalIDKey: d.PayGate.ExternalIDKey, Timeout: a.Timeout, MaxAttempts: a.MaxAttempts,
			RequestsPerSecond: a.RequestsPerSecond, MaxRetryAfter: a.MaxRetryAfter, Registerer: m.reg, Logger: log.Named("paygate")})
		if err != nil {
			return nil, fmt.Errorf("destination.paygate: %w", err)
		}
		return dst, nil
	case DestPin:
		a := d.Pin.APIConfig
		dst, err := pin.New(pin.Options{BaseURL: a.BaseURL, SecretKey: a.SecretKey, Mode: d.Pin.Environment,
			Timeout: a.Timeout, MaxAttempts: a.MaxAttempts, RequestsPerSecond: a.RequestsPerSecond,
			MaxRetryAfter: a.MaxRetryAfter, Registerer: m.reg, Logger: log.Named("pin")})
		if err != nil {
			return nil, fmt.Errorf("destination.pin: %w", err)
		}
		return dst, nil
	case DestPlugipay:
		p := cfg.Plugipay
		dst, err := plugipaydest.New(plugipaydest.Options{BaseURL: p.BaseURL, KeyID: p.KeyID, Secret: p.Secret,
			OnBehalfOf: p.OnBehalfOf, Timeout: p.Timeout, MaxAttempts: p.MaxAttempts, MaxRetryAfter: p.MaxRetryAfter,
			ReadRate: rateOption(p.ReadsPerSecond), WriteRate: rateOption(p.WritesPerSecond),
			Registerer: m.reg, Logger: log.Named("plugipay"), UserAgent: m.userAgent})
		if err != nil {
			return nil, fmt.Errorf("%s: %w", cmp.Or(cfg.plugipayKey, "plugipay"), err)
		}
		return dst, nil
	}
	return nil, fmt.Errorf("destination.type: unknown destination %q", cfg.Destination.Type)
}

// destinationIdentity names the kind of API a state file's customer ids
// belong to (see state.DB.BindDestination). It leaves the URL out, so a
// moved endpoint or a local emulator on a new port keeps its state.
func destinationIdentity(cfg Config) string {
	if cfg.Destination.Type == DestPin {
		return DestPin + " " + cfg.Destination.Pin.Environment
	}
	return cfg.Destination.Type
}

// managedFields is the set of fields the config maps: the sync owns those
// and no others (issue 4, field ownership).
func managedFields(cfg Config) *sync.Managed {
	cols, ok := cfg.CRM.mapping()
	if !ok {
		return nil
	}
	return &sync.Managed{
		Email:        cols.Email != "",
		Name:         cols.Name != "" || cols.NameTemplate != "",
		Phone:        cols.Phone != "",
		TaxID:        cols.TaxID != "",
		MetadataKeys: slices.Sorted(maps.Keys(cols.Metadata)),
	}
}

// mapping returns the field mapping of the configured source.
func (c CRMConfig) mapping() (ColumnMap, bool) {
	switch {
	case c.Type == "csv" && c.CSV != nil:
		return c.CSV.Columns, true
	case c.Type == "jsonl" && c.JSONL != nil:
		return c.JSONL.Fields, true
	case c.Type == "sql" && c.SQL != nil:
		return c.SQL.Columns, true
	case c.Type == "hubspot" && c.HubSpot != nil:
		return c.HubSpot.Fields, true
	}
	return ColumnMap{}, false
}

// rateOption maps the config's "0 means no cap" to the client's "negative
// means no cap".
func rateOption(perSecond float64) float64 {
	if perSecond == 0 {
		return -1
	}
	return perSecond
}

// newSource builds the configured CRM source without a watermark store
// (enough for counting; an incremental SQL source needs newSourceWith).
func newSource(c CRMConfig) (sync.Source, error) { return newSourceWith(c, sourceEnv{}) }

// sourceEnv is what a source may use of the process: wm keeps the
// watermarks of incremental sources; an API source (HubSpot) reports its
// calls to reg (the shared API metrics) and logs its retries to log.
type sourceEnv struct {
	wm  crm.WatermarkStore
	reg prometheus.Registerer
	log *zap.Logger
}

// newSourceWith builds the configured CRM source in env.
func newSourceWith(c CRMConfig, env sourceEnv) (sync.Source, error) {
	wm := env.wm
	norm := c.Normalize.options()
	switch c.Type {
	case "csv":
		var delim rune
		for _, r := range c.CSV.Delimiter {
			delim = r
		}
		src, err := crm.NewCSV(crm.CSVOptions{
			Path:      c.CSV.Path,
			Delimiter: delim,
			Columns:   c.CSV.Columns.crm(),
			Normalize: norm,
		})
		if err != nil {
			return nil, err
		}
		return src, nil
	case "jsonl":
		src, err := crm.NewJSONL(crm.JSONLOptions{
			Path:         c.JSONL.Path,
			Fields:       c.JSONL.Fields.crm(),
			Normalize:    norm,
			MaxLineBytes: c.JSONL.MaxLineBytes,
		})
		if err != nil {
			return nil, err
		}
		return src, nil
	case "sql":
		s := c.SQL
		src, err := sqlsrc.New(sqlsrc.Options{
			Driver: s.Driver, DSN: s.DSN, Table: s.Table, Query: s.Query,
			IDColumn: s.IDColumn, UpdatedAtColumn: s.UpdatedAtColumn, DeletedColumn: s.DeletedColumn,
			Columns: s.Columns.crm(), Normalize: norm, PageSize: s.PageSize,
			Incremental: s.Incremental, Overlap: s.Overlap,
			FullScanEvery: s.FullScanEvery, FullScanInterval: s.FullScanInterval,
			Watermarks: wm, TenantColumn: s.TenantColumn, Tenant: s.tenant,
		})
		if err != nil {
			return nil, err
		}
		return src, nil
	case "hubspot":
		h := c.HubSpot
		src, err := hubspot.New(hubspot.Options{
			BaseURL: h.BaseURL, PathPrefix: h.PathPrefix, Token: h.Token,
			Fields: h.Fields.crm(), Normalize: norm,
			Incremental: h.Incremental, Lookback: h.Lookback,
			FullScanEvery: h.FullScanEvery, FullScanInterval: h.FullScanInterval,
			Watermarks: wm, Registerer: env.reg, Logger: env.log,
		})
		if err != nil {
			return nil, err
		}
		return src, nil
	}
	return nil, fmt.Errorf("crm.type: unknown source %q", c.Type)
}

// watermarks adapts the state DB to crm.WatermarkStore. A dry run reads
// the watermark but never moves it.
type watermarks struct {
	db     *state.DB
	dryRun bool
}

func (w watermarks) Watermark(ctx context.Context, source string) (crm.Watermark, bool, error) {
	if w.db == nil {
		return crm.Watermark{}, false, errors.New("no state DB")
	}
	v, ok, err := w.db.Watermark(ctx, source)
	return crm.Watermark(v), ok, err
}

func (w watermarks) SetWatermark(ctx context.Context, source string, v crm.Watermark) error {
	if w.db == nil {
		return errors.New("no state DB")
	}
	if w.dryRun {
		return nil
	}
	return w.db.SetWatermark(ctx, source, state.Watermark(v))
}

// runOnce runs one sync, prints its summary and maps the outcome to an
// exit code.
func (m *Main) runOnce(ctx context.Context) (int, error) {
	// A backfill Job is scraped too: serve /metrics for the whole run. A
	// busy port costs the metrics, not the run.
	m.health.restore(ctx, m.store, m.syncMetrics, m.log)
	stopListener, lerr := m.listen()
	if lerr != nil {
		m.log.Warn("serving no metrics during this run", zap.Error(lerr))
		stopListener = func() {}
	}
	defer stopListener()
	stopWatch := m.watchProgress(m.rec)
	stopProgress := m.startProgress(ctx)
	rec, err := m.rec.Run(ctx)
	stopProgress()
	stopWatch()
	m.health.runFinished(rec, err)
	m.gauge.refresh(context.WithoutCancel(ctx), m.store, m.log)
	printSummary(m.stdout, rec)
	if m.cfg.Sync.Deletion == sync.DeletionArchive {
		fmt.Fprintf(m.stdout, "  archived %d\n", rec.Counts.Archived)
	}
	return runExitCode(rec, err), err
}

// runExitCode maps a run's outcome to the exit code of --once: the one
// workspace's, or each tenant's of a round (see roundExit).
func runExitCode(rec sync.RunRecord, err error) int {
	switch {
	case errors.Is(err, sync.ErrMassArchive):
		// The sync itself finished; the refusal needs a person to look.
		return ExitPartial
	case err != nil:
		return exitCode(err)
	case rec.Outcome == sync.OutcomePartial:
		return ExitPartial
	}
	return ExitOK
}

// printSummary writes a run's counts for a person to read.
func printSummary(w io.Writer, r sync.RunRecord) {
	c := r.Counts
	fmt.Fprintf(w, "run %d: %s in %s\n", r.ID, r.Outcome, r.FinishedAt.Sub(r.StartedAt).Round(time.Millisecond))
	fmt.Fprintf(w, "  read %d  created %d  updated %d  unchanged %d  recovered %d  rejected %d  failed %d\n",
		c.Read, c.Created, c.Updated, c.Unchanged, c.Recovered, c.Rejected, c.Failed)
	if c.Skipped > 0 {
		fmt.Fprintf(w, "  skipped %d (left alone by sync.mode: no linked customer in update-only, a change in create-only)\n", c.Skipped)
	}
	if r.Error != "" {
		fmt.Fprintf(w, "  error: %s\n", r.Error)
	}
}

// Close releases what open built. It is safe to call more than once.
func (m *Main) Close() {
	if m.store != nil {
		if err := m.store.Close(); err != nil && m.log != nil {
			m.log.Error("close state DB", zap.Error(err))
		}
		m.store = nil
	}
	if m.lock != nil {
		if err := m.lock.Release(); err != nil && m.log != nil {
			m.log.Error("release the state DB's writer lock", zap.Error(err))
		}
		m.lock = nil
	}
	if m.stateLocker != nil {
		if err := m.stateLocker.Close(); err != nil && m.log != nil {
			m.log.Error("release the tenants' writer locks", zap.Error(err))
		}
		m.stateLocker = nil
	}
	if m.statePool != nil {
		if err := m.statePool.Close(); err != nil && m.log != nil {
			m.log.Error("close the state's connection pool", zap.Error(err))
		}
		m.statePool = nil
	}
	if m.planDir != "" {
		os.RemoveAll(m.planDir)
		m.planDir = ""
	}
	if m.log != nil {
		_ = m.log.Sync()
	}
}
