// Command gateway is the Alipay notification gateway: it serves Alipay's
// application-gateway endpoint and the ops API. `gateway migrate` applies the
// database migrations and exits; `gateway reseal` seals the stored tokens
// again under the current TOKEN_ENCRYPTION_KEY (see reseal.go); `gateway
// prune` deletes what the retention settings no longer keep (prune.go);
// `gateway healthcheck URL` probes a running gateway, for container images without a
// shell. Every setting comes from the environment; see README.md.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net/http"
	"os"
	"os/signal"
	"runtime/debug"
	"syscall"
	"time"

	"github.com/rs/zerolog"

	"github.com/alipay-notify-gateway/gateway/internal/batchsend"
	"github.com/alipay-notify-gateway/gateway/internal/certwatch"
	"github.com/alipay-notify-gateway/gateway/internal/config"
	"github.com/alipay-notify-gateway/gateway/internal/console"
	"github.com/alipay-notify-gateway/gateway/internal/httpapi"
	"github.com/alipay-notify-gateway/gateway/internal/intake"
	"github.com/alipay-notify-gateway/gateway/internal/metrics"
	"github.com/alipay-notify-gateway/gateway/internal/msgchannel"
	"github.com/alipay-notify-gateway/gateway/internal/notify"
	"github.com/alipay-notify-gateway/gateway/internal/outbound"
	"github.com/alipay-notify-gateway/gateway/internal/postgres"
	"github.com/alipay-notify-gateway/gateway/internal/reconcile"
	"github.com/alipay-notify-gateway/gateway/internal/retention"
	"github.com/alipay-notify-gateway/gateway/internal/webhook"
)

func main() {
	cmd := "serve"
	if len(os.Args) > 1 {
		cmd = os.Args[1]
	}
	var err error
	switch cmd {
	case "serve":
		err = serve()
	case "migrate":
		err = migrate()
	case "reseal":
		err = reseal(os.Args[2:], os.Stdout)
	case "prune":
		err = prune(os.Args[2:], os.Stdout)
	case "healthcheck":
		err = healthcheck(os.Args[2:])
	case "-h", "--help", "help":
		fmt.Println("usage: gateway [serve|migrate|reseal [--dry-run]|prune [--dry-run]|healthcheck URL]\n\n" +
			"serve        run the gateway (the default)\n" +
			"migrate      apply the database migrations and exit\n" +
			"reseal       seal every stored token not under TOKEN_ENCRYPTION_KEY again under it (after a key rotation);\n" +
			"             safe while gateways serve; --dry-run counts without writing\n" +
			"prune        delete now what RETENTION_* no longer keeps (as the gateways do every PRUNE_INTERVAL);\n" +
			"             --dry-run says what it would delete, deleting nothing\n" +
			"healthcheck  GET URL (e.g. http://127.0.0.1:8081/readyz) and exit 0 if it answers 200, 1 if not\n\n" +
			"Settings come from the environment: see README.md.")
		return
	default:
		err = fmt.Errorf("unknown command %q (want serve, migrate, reseal, prune or healthcheck)", cmd)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "gateway:", err)
		os.Exit(1)
	}
}

func newLogger(level string) zerolog.Logger {
	lvl, err := zerolog.ParseLevel(level)
	if err != nil || level == "" {
		lvl = zerolog.InfoLevel
	}
	zerolog.TimeFieldFormat = time.RFC3339Nano
	return zerolog.New(os.Stdout).Level(lvl).With().Timestamp().Logger()
}

// command is what a subcommand runs with: a context that SIGINT and SIGTERM
// end, the settings, the database with its migrations applied, the logger.
type command struct {
	ctx  context.Context
	cfg  *config.Config
	db   *postgres.DB
	log  zerolog.Logger
	stop context.CancelFunc
}

// open loads the configuration and opens the database with migrations
// applied. The caller must close the command.
func open() (*command, error) {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	cfg, err := config.Load(config.Environ(), time.Now())
	if err != nil {
		stop()
		return nil, err
	}
	log := newLogger(cfg.LogLevel)
	db, err := postgres.Open(ctx, postgres.Config{URL: cfg.DatabaseURL, MaxConns: cfg.DatabaseMaxConn})
	if err != nil {
		stop()
		return nil, err
	}
	if err := migrateWithRetry(ctx, db, log); err != nil {
		db.Close()
		stop()
		return nil, err
	}
	return &command{ctx: ctx, cfg: cfg, db: db, log: log, stop: stop}, nil
}

func (c *command) close() {
	c.db.Close()
	c.stop()
}

// openDryRun parses the flags of a subcommand that takes only --dry-run
// (described by usage) and opens the command. It returns a nil command
// after -h (the usage printed, no error) or an error.
func openDryRun(name, usage string, args []string) (c *command, dryRun bool, err error) {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	d := fs.Bool("dry-run", false, usage)
	if err := fs.Parse(args); err != nil {
		return nil, false, ignoreHelp(err)
	}
	if fs.NArg() > 0 {
		return nil, false, fmt.Errorf("%s: unexpected argument %q", name, fs.Arg(0))
	}
	c, err = open()
	return c, *d, err
}

func ignoreHelp(err error) error {
	if errors.Is(err, flag.ErrHelp) {
		return nil
	}
	return err
}

// migrateWithRetry applies the migrations, waiting up to a minute for a
// database that is still starting.
func migrateWithRetry(ctx context.Context, db *postgres.DB, log zerolog.Logger) error {
	deadline := time.Now().Add(time.Minute)
	for wait := 500 * time.Millisecond; ; wait = min(wait*2, 5*time.Second) {
		err := db.Migrate(ctx)
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return err
		}
		log.Warn().Err(err).Dur("retry_in", wait).Msg("database not ready for migrations")
		select {
		case <-time.After(wait):
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

func migrate() error {
	c, err := open()
	if err != nil {
		return err
	}
	defer c.close()
	c.log.Info().Msg("migrations applied")
	return nil
}

// sampleMetrics refreshes the sampled gauges every 15 seconds.
func sampleMetrics(ctx context.Context, m *metrics.Metrics, db *postgres.DB) {
	t := time.NewTicker(15 * time.Second)
	defer t.Stop()
	for {
		m.Sample(ctx, db.Pool, db)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func serve() error {
	if os.Getenv("GOGC") == "" {
		// The heap is small (tens of MiB) and mostly short-lived request
		// garbage: collect less often, for a fifth less CPU under load.
		debug.SetGCPercent(400)
	}
	c, err := open()
	if err != nil {
		return err
	}
	defer c.close()
	ctx, cfg, db, log := c.ctx, c.cfg, c.db, c.log
	if cfg.Sealer == nil {
		log.Error().Msg("TOKEN_ENCRYPTION_KEY is not set: authorization grants are refused (503 fail, Alipay resends them for about 25 hours) until it is")
	}
	if len(cfg.TokenOldKeys) > 0 {
		log.Info().Int("old_keys", len(cfg.TokenOldKeys)).Msg("TOKEN_ENCRYPTION_OLD_KEYS: tokens sealed under an old key open; `gateway reseal` seals them under TOKEN_ENCRYPTION_KEY")
	}
	if len(cfg.OpsAPITokens) == 0 {
		log.Warn().Msg("OPS_API_TOKENS is not set: the ops API (/v1) refuses every request")
	}
	m := metrics.New()
	go sampleMetrics(ctx, m, db)
	certwatch.Start(ctx, certwatch.Config{Apps: cfg.Apps, Metrics: m, Logger: log})
	// Group commit: concurrent notifications share a transaction; each
	// request still waits for its own commit.
	inbox := postgres.NewBatcher(db, postgres.BatcherConfig{
		MaxBatch: cfg.BatchMax, MaxWait: cfg.BatchWait, Flushers: cfg.BatchFlushers, OnBatch: m.Batch,
	})
	// One intake pipeline for every channel: decide with the registry,
	// store and apply through the inbox, answer, count, log.
	pipeline := intake.New(intake.Config{
		Registry: notify.NewRegistry(notify.RegistryConfig{Sealer: cfg.Sealer, MaxClockSkew: cfg.MaxClockSkew}),
		Inbox:    inbox,
		Arrivals: inbox,
		Metrics:  m,
		Logger:   log,
		Store:    db,
		Redecode: cfg.Verifier.Redecode,
	})
	// The WebSocket channel of every app whose ALIPAY_CHANNEL is websocket
	// or both (none: an idle manager, always ready), into the same pipeline.
	channels, err := msgchannel.NewManager(msgchannel.Config{
		Verifier:      cfg.Verifier,
		Intake:        pipeline,
		Host:          cfg.MsgHost,
		AllowInsecure: cfg.MsgAllowInsecure,
		Logger:        log,
		Metrics:       m,
	})
	if err != nil {
		inbox.Close()
		return err
	}
	// Its own context, cancelled at shutdown and waited for before the inbox
	// and the database close, so that in-flight messages are committed and
	// acknowledged.
	chCtx, chStop := context.WithCancel(context.WithoutCancel(ctx))
	chDone := make(chan struct{})
	go func() {
		defer close(chDone)
		_ = channels.Run(chCtx)
	}()
	stopChannels := func() {
		chStop()
		<-chDone
	}
	defer stopChannels()
	if ids := channels.AppIDs(); len(ids) > 0 {
		log.Info().Strs("app_ids", ids).Str("msg_host", cfg.MsgHost).Msg("WebSocket channel enabled")
	}

	out, err := startOutbound(ctx, cfg, db, m, log)
	if err != nil {
		return err
	}
	// Reconciliation asks Alipay what notifications may have lost, on the
	// schedule, after outages and on demand; it stops (a target under way
	// left to a later claim) before the database closes.
	var rec *reconcile.Reconciler
	stopReconcile := func() {}
	if out != nil {
		rec = reconcile.New(reconcile.Config{
			Store: db, Alipay: out, Limiter: db, Rate: cfg.ReconcileRate, AppIDs: out.AppIDs(),
			Interval: cfg.ReconcileInterval, AfterOutage: cfg.ReconcileAfterOutage,
			Health: []func(context.Context) error{db.Ready, channels.Ready}, Deliveries: m.DeliveryTotals,
			Metrics: m, Logger: log.With().Str("component", "reconcile").Logger(),
		})
		rctx, rstop := context.WithCancel(context.WithoutCancel(ctx))
		rdone := make(chan struct{})
		go func() { defer close(rdone); rec.Run(rctx) }()
		stopReconcile = func() { rstop(); <-rdone }
		log.Info().Dur("interval", cfg.ReconcileInterval).Float64("rate", cfg.ReconcileRate).
			Dur("after_outage", cfg.ReconcileAfterOutage).Msg("reconciliation on")
	}
	defer stopReconcile()
	// Events reach the ISV's endpoints from the outbox, decoupled from
	// intake; the dispatcher stops with the context, finishing the
	// attempts it has begun.
	stopDispatch := func() {}
	if cfg.WebhookDispatch {
		dispatcher := webhook.New(webhook.Config{
			Store: db, Logger: log, Metrics: m, Concurrency: cfg.WebhookConcurrency, Timeout: cfg.WebhookTimeout,
			Poll: cfg.WebhookPoll, DisableAfter: cfg.WebhookDisableAfter, UserAgent: "alipay-notify-gateway/" + version(),
			Busy: inbox.Busy, // intake first: the webhooks catch up when it eases
		})
		dctx, dstop := context.WithCancel(context.WithoutCancel(ctx))
		ddone := make(chan struct{})
		go func() { defer close(ddone); dispatcher.Run(dctx) }()
		stopDispatch = func() { dstop(); <-ddone }
	}
	defer stopDispatch()
	// Template message batches: every replica serves the API; those with
	// TEMPLATE_BATCH_DISPATCH send, sharing the queue and the rate.
	batches, stopBatches := startBatches(ctx, cfg, db, out, m, log)
	defer stopBatches()
	// Retention: what is past its time is pruned off the hot path, by one
	// replica at a time, yielding to intake.
	m.Retention(retentionGauge(cfg.Retention()))
	stopPrune := func() {}
	if cfg.Prune {
		pruner := retention.New(retention.Config{
			Store: db, Retention: cfg.Retention(), Interval: cfg.PruneInterval, Batch: cfg.PruneBatch,
			Busy: inbox.Busy, Metrics: m, Logger: log,
		})
		pruner.Start()
		stopPrune = pruner.Stop
	}
	defer stopPrune()
	hcfg := httpapi.Config{
		Outbound:         out,
		BatchMaxBytes:    cfg.TemplateBatchMaxBytes,
		Webhooks:         &webhook.Admin{AdminStore: db, Overlap: cfg.WebhookSecretOverlap},
		ReadyChecks:      []func(context.Context) error{db.Ready, channels.Ready},
		Metrics:          m,
		Verifier:         cfg.Verifier,
		Intake:           pipeline,
		Store:            db,
		Reprocessor:      pipeline,
		Logger:           log,
		MaxBodyBytes:     cfg.MaxBodyBytes,
		Tokens:           cfg.OpsAPITokens,
		InternalListener: cfg.InternalAddr != "",

		// X-Forwarded-For names the client for the callback's rate limit
		// only when these proxies sent it.
		TrustedProxies: cfg.TrustedProxies,
	}
	if batches != nil {
		hcfg.Batches = batches
	}
	if rec != nil {
		hcfg.Reconcile = rec
	}
	if cfg.Console {
		// The ops console, under /console: the same reads as the ops API.
		ccfg := console.Config{
			Store: db, Reprocessor: pipeline, Webhooks: hcfg.Webhooks, Verifier: cfg.Verifier, Keys: cfg.Keys,
			Channels: consoleChannels(channels), ReadyChecks: hcfg.ReadyChecks, Metrics: m, Tokens: cfg.OpsAPITokens,
			SessionTTL: cfg.ConsoleSessionTTL, TrustedProxies: cfg.TrustedProxies, Location: cfg.ConsoleLocation,
			MaxBodyBytes: cfg.MaxBodyBytes, Logger: log,
		}
		if rec != nil {
			ccfg.Reconcile = rec // the reconciliation page: the service POST /v1/reconcile-runs calls
		}
		if batches != nil {
			ccfg.Batches = batches // the batches page: the Admin of the ops API's batch routes
		}
		hcfg.Console = console.New(ccfg)
	}
	srv := &http.Server{
		Addr:              cfg.HTTPAddr,
		Handler:           httpapi.New(hcfg),
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       2 * time.Minute,
	}
	errc := make(chan error, 2)
	go func() { errc <- srv.ListenAndServe() }()
	var internal *http.Server
	if cfg.InternalAddr != "" {
		// No WriteTimeout: a CPU profile or trace takes ?seconds=N.
		internal = &http.Server{
			Addr:              cfg.InternalAddr,
			Handler:           httpapi.NewInternal(hcfg),
			ReadHeaderTimeout: 10 * time.Second,
			IdleTimeout:       2 * time.Minute,
		}
		go func() { errc <- internal.ListenAndServe() }()
		log.Info().Str("addr", cfg.InternalAddr).Msg("internal listener: /healthz, /readyz, /metrics, /debug/pprof/")
	}
	if cfg.PprofAddr != "" {
		go servePprof(cfg.PprofAddr, log)
	}
	for _, a := range cfg.Apps {
		mode := "public_key"
		if a.CertMode {
			mode = "certificate"
		}
		log.Info().Str("app_id", a.ID).Str("mode", mode).Int("keys", len(a.Keys)).Msg("app configured")
	}
	log.Info().Str("addr", cfg.HTTPAddr).Msg("gateway listening")

	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	log.Info().Msg("shutting down: finishing in-flight notifications")
	sctx, cancel := context.WithTimeout(context.Background(), cfg.ShutdownTimeout)
	defer cancel()
	chStop() // the WebSocket channels drain while HTTP does
	err = srv.Shutdown(sctx)
	stopChannels()
	// Every request and message has had its answer; commit what is queued.
	inbox.Close()
	stopBatches() // the sends in flight end and are recorded
	stopDispatch()
	stopPrune()
	stopReconcile()
	if internal != nil {
		// Last, so that probes and scrapes are answered while the rest drains.
		if ierr := internal.Shutdown(sctx); err == nil {
			err = ierr
		}
	}
	if err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("shutdown: %w", err)
	}
	log.Info().Msg("stopped")
	return nil
}

// consoleChannels are the WebSocket channels, for the console.
func consoleChannels(m *msgchannel.Manager) []console.Channel {
	var out []console.Channel
	for _, c := range m.Clients() {
		out = append(out, c)
	}
	return out
}

// servePprof serves the profiler on its own listener, never on HTTP_ADDR.
func servePprof(addr string, log zerolog.Logger) {
	log.Info().Str("addr", addr).Msg("pprof listening")
	srv := &http.Server{Addr: addr, Handler: httpapi.Pprof(), ReadHeaderTimeout: 10 * time.Second}
	if err := srv.ListenAndServe(); err != nil {
		log.Error().Err(err).Msg("pprof stopped")
	}
}

// healthcheck GETs args[0] and fails unless it answers 200: the container
// healthcheck of an image that has no shell or HTTP client.
func healthcheck(args []string) error {
	if len(args) != 1 {
		return errors.New("usage: gateway healthcheck URL (e.g. http://127.0.0.1:8081/readyz)")
	}
	client := &http.Client{Timeout: 3 * time.Second}
	resp, err := client.Get(args[0])
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("healthcheck %s: %s", args[0], resp.Status)
	}
	return nil
}

// startOutbound makes the outbound service when an app has a private key and
// tokens can be sealed, and starts the token refresher; it returns nil
// (outbound routes off) otherwise.
func startOutbound(ctx context.Context, cfg *config.Config, db *postgres.DB, m *metrics.Metrics, log zerolog.Logger) (*outbound.Service, error) {
	if !outbound.Configured(cfg.Apps) {
		return nil, nil
	}
	if cfg.Sealer == nil {
		log.Warn().Msg("an app private key is set but TOKEN_ENCRYPTION_KEY is not: outbound calls (template messages, authorization callback, token refresh) are off")
		return nil, nil
	}
	out, err := outbound.New(outbound.Config{
		Apps:       cfg.Apps,
		GatewayURL: cfg.GatewayURL,
		AuthURL:    cfg.AuthURL,
		Store:      db,
		Sealer:     cfg.Sealer,
		Metrics:    m,
		Logger:     log.With().Str("component", "outbound").Logger(),
	})
	if err != nil {
		return nil, err
	}
	go out.Refresher(outbound.RefresherConfig{}).Run(ctx)
	log.Info().Strs("app_ids", out.AppIDs()).Str("gateway", cfg.GatewayURL).Msg("outbound calls on; token refresher started")
	return out, nil
}

// startBatches makes the batch API's Admin when outbound calls are on, and
// starts the batch sender unless TEMPLATE_BATCH_DISPATCH is off; it
// returns a nil Admin (batch routes off) otherwise. The stop function
// stops claiming, waits for the sends in flight and records them.
func startBatches(ctx context.Context, cfg *config.Config, db *postgres.DB, out *outbound.Service, m *metrics.Metrics, log zerolog.Logger) (*batchsend.Admin, func()) {
	if out == nil {
		return nil, func() {}
	}
	rates := batchsend.Rates{Default: cfg.TemplateRateDefault, Apps: cfg.TemplateRates}
	admin := &batchsend.Admin{Store: db, Outbound: out, Rates: rates, MaxRecipients: cfg.TemplateBatchMaxRecipients,
		Logger: log.With().Str("component", "batchsend").Logger()}
	if !cfg.TemplateBatchDispatch {
		log.Info().Msg("TEMPLATE_BATCH_DISPATCH=false: this replica takes template message batches and leaves sending them to others")
		return admin, func() {}
	}
	sender := batchsend.New(batchsend.Config{
		Store: db, Bucket: db, Outbound: out, Rates: rates, Metrics: m, Logger: log, Concurrency: cfg.TemplateSendConcurrency,
	})
	bctx, bstop := context.WithCancel(context.WithoutCancel(ctx))
	done := make(chan struct{})
	go func() { defer close(done); sender.Run(bctx) }()
	return admin, func() { bstop(); <-done }
}

// version is the module version or VCS revision the binary was built from.
func version() string {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return "dev"
	}
	for _, s := range bi.Settings {
		if s.Key == "vcs.revision" && len(s.Value) >= 7 {
			return s.Value[:7]
		}
	}
	return "dev"
}
