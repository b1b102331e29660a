// Package webhook forwards the outbox's events to the ISV's endpoints,
// signed per the Standard Webhooks specification (internal/stdwebhook),
// at least once, decoupled from Alipay's reply: intake only writes events
// (internal/postgres, in the notification's transaction), and the
// Dispatcher here delivers them.
//
// Each replica runs a Dispatcher; each runs one worker per enabled
// endpoint. A worker gives its endpoint the new events of the feed
// (FanOut), claims what is due (ClaimDeliveries), attempts up to
// Concurrency deliveries at once, each within Timeout, and records the
// results (RecordAttempts), which schedule a failure's retry with backoff
// (notify.Backoff) or dead-letter it once notify.DeliveryWindow has
// passed. The store locks each row it hands out (FOR UPDATE SKIP LOCKED),
// so replicas share the work; a claim is a lease, so a replica that dies
// mid-attempt leaves the delivery to another once the lease ends. A slow
// or dead endpoint holds up only its own worker.
package webhook

import (
	"context"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/rs/zerolog"

	"github.com/alipay-notify-gateway/gateway/internal/metrics"
	"github.com/alipay-notify-gateway/gateway/internal/notify"
)

// Store is what the dispatcher needs of the database (postgres.DB); each
// method returns an EUNAVAILABLE *notify.Error when it cannot be reached.
type Store interface {
	Endpoints(ctx context.Context, enabledOnly bool) ([]*notify.Endpoint, error)
	FanOut(ctx context.Context, id int64, limit, claim int, window, lease time.Duration) ([]notify.Delivery, int, error)
	ClaimDeliveries(ctx context.Context, id int64, limit int, lease time.Duration) ([]notify.Delivery, error)
	RecordAttempts(ctx context.Context, attempts []notify.Attempt, disableAfter time.Duration) ([]int64, error)
	WebhookStats(ctx context.Context) (*notify.WebhookStats, error)
}

// Config is what a Dispatcher needs. Zero values take the defaults.
type Config struct {
	Store   Store
	Logger  zerolog.Logger
	Metrics *metrics.Metrics
	// Client sends the deliveries; by default one that follows no
	// redirect (a 3xx is a failed attempt) and keeps Concurrency
	// connections per host.
	Client *http.Client
	// Concurrency is how many attempts to one endpoint run at once in
	// this replica (16).
	Concurrency int
	// Batch is how many deliveries a worker claims at once (4 ×
	// Concurrency).
	Batch int
	// Timeout bounds one attempt, from connecting to the answer's first
	// bytes (10s).
	Timeout time.Duration
	// Poll is how often an idle worker looks for new events (250ms), and
	// Refresh how often the endpoints are read again (2s).
	Poll, Refresh time.Duration
	// DisableAfter disables an endpoint every attempt of which has failed
	// for this long (5 days).
	DisableAfter time.Duration
	// UserAgent is sent with each delivery.
	UserAgent string
	// Window is how long after an event its delivery is attempted before
	// it is dead-lettered (notify.DeliveryWindow), and Backoff the wait
	// after a failed attempt (notify.Backoff); for tests.
	Window  time.Duration
	Backoff func(attempt int) time.Duration
	// Busy, when set, says that this replica's intake is busy: the
	// dispatcher then yields to it, taking a few deliveries at a time, so
	// that Alipay's answers never wait for the webhooks (which catch up
	// when intake eases). postgres.Batcher.Busy.
	Busy func() bool
}

// ResponseLimit is how much of an endpoint's answer an attempt keeps.
const ResponseLimit = 1024

// fanOutLimit is how many events a worker reads from the feed at once.
const fanOutLimit = 1000

// Dispatcher delivers events to the endpoints.
type Dispatcher struct {
	cfg     Config
	log     zerolog.Logger
	sampled zerolog.Logger // for per-attempt failures
	mu      sync.Mutex
	workers map[int64]*worker
}

// New returns a Dispatcher for cfg.
func New(cfg Config) *Dispatcher {
	if cfg.Concurrency <= 0 {
		cfg.Concurrency = 16
	}
	if cfg.Batch <= 0 {
		cfg.Batch = 4 * cfg.Concurrency
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 10 * time.Second
	}
	if cfg.Poll <= 0 {
		cfg.Poll = 250 * time.Millisecond
	}
	if cfg.Refresh <= 0 {
		cfg.Refresh = 2 * time.Second
	}
	if cfg.DisableAfter <= 0 {
		cfg.DisableAfter = 5 * 24 * time.Hour
	}
	if cfg.Window <= 0 {
		cfg.Window = notify.DeliveryWindow
	}
	if cfg.UserAgent == "" {
		cfg.UserAgent = "alipay-notify-gateway"
	}
	if cfg.Client == nil {
		cfg.Client = &http.Client{
			Transport: &http.Transport{
				Proxy:               http.ProxyFromEnvironment,
				DialContext:         (&net.Dialer{Timeout: cfg.Timeout, KeepAlive: 30 * time.Second}).DialContext,
				MaxIdleConnsPerHost: cfg.Concurrency,
				IdleConnTimeout:     90 * time.Second,
				TLSHandshakeTimeout: cfg.Timeout,
			},
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		}
	}
	log := cfg.Logger.With().Str("component", "webhook").Logger()
	return &Dispatcher{cfg: cfg, log: log, workers: map[int64]*worker{},
		sampled: log.Sample(&zerolog.BurstSampler{Burst: 10, Period: time.Second})}
}

// lease is how long a claim holds its deliveries: every wave of
// Concurrency attempts may take Timeout, with a margin.
func (d *Dispatcher) lease() time.Duration {
	waves := (d.cfg.Batch + d.cfg.Concurrency - 1) / d.cfg.Concurrency
	return time.Duration(waves)*d.cfg.Timeout + 30*time.Second
}

// Run delivers until ctx ends, then waits for the attempts in progress
// (each bounded by Timeout) and returns.
func (d *Dispatcher) Run(ctx context.Context) {
	var wg sync.WaitGroup
	defer wg.Wait()
	refresh := time.NewTicker(d.cfg.Refresh)
	defer refresh.Stop()
	stats := time.NewTicker(15 * time.Second)
	defer stats.Stop()
	for {
		d.refresh(ctx, &wg)
		select {
		case <-ctx.Done():
			return
		case <-stats.C:
			d.sample(ctx)
		case <-refresh.C:
		}
	}
}

// refresh starts a worker for each enabled endpoint that has none, gives
// the others their endpoint as it now is, and stops those of endpoints
// disabled or deleted.
func (d *Dispatcher) refresh(ctx context.Context, wg *sync.WaitGroup) {
	eps, err := d.cfg.Store.Endpoints(ctx, true)
	if err != nil {
		if ctx.Err() == nil {
			d.log.Warn().Err(err).Msg("webhook endpoints not read; trying again")
		}
		return
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	live := make(map[int64]bool, len(eps))
	for _, ep := range eps {
		live[ep.ID] = true
		if w := d.workers[ep.ID]; w != nil {
			w.set(ep)
			continue
		}
		w, err := d.newWorker(ctx, ep)
		if err != nil {
			d.log.Error().Err(err).Int64("endpoint_id", ep.ID).Msg("webhook endpoint has a secret that does not parse: not delivering to it")
			continue
		}
		d.workers[ep.ID] = w
		wg.Add(1)
		go func() { defer wg.Done(); w.run() }()
	}
	for id, w := range d.workers {
		if !live[id] {
			w.stop()
			delete(d.workers, id)
		}
	}
}

// sample refreshes the dispatcher's gauges.
func (d *Dispatcher) sample(ctx context.Context) {
	st, err := d.cfg.Store.WebhookStats(ctx)
	if err != nil {
		return
	}
	d.cfg.Metrics.WebhookGauges(st.OldestPending, st.Dead, st.Disabled, st.FeedLag)
}
