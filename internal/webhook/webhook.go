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
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/rs/zerolog"

	"github.com/alipay-notify-gateway/gateway/internal/metrics"
	"github.com/alipay-notify-gateway/gateway/internal/notify"
	"github.com/alipay-notify-gateway/gateway/internal/stdwebhook"
)

// Store is what the dispatcher needs of the database (postgres.DB); each
// method returns an EUNAVAILABLE *notify.Error when it cannot be reached.
type Store interface {
	Endpoints(ctx context.Context, enabledOnly bool) ([]*notify.Endpoint, error)
	FanOut(ctx context.Context, id int64, limit int, window time.Duration) (read, queued int, err error)
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

// worker delivers to one endpoint.
type worker struct {
	d      *Dispatcher
	ctx    context.Context
	stop   context.CancelFunc
	mu     sync.Mutex
	ep     *notify.Endpoint
	keys   [][]byte
	rand   *rand.Rand
	failed bool // the last attempt failed: the next success is logged
}

func (d *Dispatcher) newWorker(ctx context.Context, ep *notify.Endpoint) (*worker, error) {
	w := &worker{d: d, rand: rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), uint64(ep.ID)))}
	if err := w.set(ep); err != nil {
		return nil, err
	}
	w.ctx, w.stop = context.WithCancel(ctx)
	return w, nil
}

// set gives w its endpoint as it now is (a new URL, a rotated secret).
func (w *worker) set(ep *notify.Endpoint) error {
	keys := make([][]byte, 0, len(ep.Secrets))
	for _, s := range ep.Secrets {
		k, err := stdwebhook.ParseSecret(s)
		if err != nil {
			return err
		}
		keys = append(keys, k)
	}
	w.mu.Lock()
	w.ep, w.keys = ep, keys
	w.mu.Unlock()
	return nil
}

// backoff is the wait after attempt failed.
func (w *worker) backoff(attempt int) time.Duration {
	if w.d.cfg.Backoff != nil {
		return w.d.cfg.Backoff(attempt)
	}
	return notify.Backoff(attempt, w.rand)
}

func (w *worker) endpoint() (*notify.Endpoint, [][]byte) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.ep, w.keys
}

// run loops until w is stopped: fan out, claim, attempt, record; an idle
// round waits Poll.
func (w *worker) run() {
	cfg := w.d.cfg
	for w.ctx.Err() == nil {
		ep, _ := w.endpoint()
		read, _, err := cfg.Store.FanOut(w.ctx, ep.ID, fanOutLimit, cfg.Window)
		if err != nil {
			w.pause(err, "events not given to the endpoint")
			continue
		}
		due, err := cfg.Store.ClaimDeliveries(w.ctx, ep.ID, cfg.Batch, w.d.lease())
		if err != nil {
			w.pause(err, "deliveries not claimed")
			continue
		}
		if len(due) > 0 {
			w.deliver(due)
			continue
		}
		if read == fanOutLimit {
			continue
		}
		select {
		case <-w.ctx.Done():
		case <-time.After(cfg.Poll):
		}
	}
}

// pause logs a store error and waits a little before the next round.
func (w *worker) pause(err error, what string) {
	if w.ctx.Err() != nil {
		return
	}
	ep, _ := w.endpoint()
	w.d.sampled.Warn().Err(err).Int64("endpoint_id", ep.ID).Msg("webhook: " + what + "; trying again")
	select {
	case <-w.ctx.Done():
	case <-time.After(time.Second):
	}
}

// deliver attempts due, Concurrency at once, and records the results. The
// results are recorded even when w is being stopped: an attempt made is
// not forgotten.
func (w *worker) deliver(due []notify.Delivery) {
	cfg := w.d.cfg
	ep, keys := w.endpoint()
	results := make([]notify.Attempt, len(due))
	sem := make(chan struct{}, cfg.Concurrency)
	var wg sync.WaitGroup
	for i := range due {
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			results[i] = w.attempt(ep, keys, due[i])
		}()
	}
	wg.Wait()
	now := time.Now()
	for i := range results {
		wait := time.Duration(0)
		if !results[i].OK {
			wait = w.backoff(results[i].Attempt)
		}
		results[i].Schedule(due[i].ExpiresAt, now, wait)
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(w.ctx), 10*time.Second)
	defer cancel()
	disabled, err := cfg.Store.RecordAttempts(ctx, results, cfg.DisableAfter)
	if err != nil {
		// The leases end and the deliveries are attempted again: at
		// least once.
		w.d.log.Warn().Err(err).Int64("endpoint_id", ep.ID).Int("attempts", len(results)).
			Msg("webhook attempts not recorded; they will be made again once their lease ends")
	}
	w.report(ep, results, disabled)
}

// report counts the attempts and logs what an operator should know: a
// failure (sampled), a dead letter, the endpoint recovering or disabled.
func (w *worker) report(ep *notify.Endpoint, results []notify.Attempt, disabled []int64) {
	for i, a := range results {
		result := "delivered"
		switch {
		case a.Dead:
			result = "dead"
			w.d.log.Error().Int64("endpoint_id", ep.ID).Int64("delivery_id", a.DeliveryID).Int("attempts", a.Attempt).
				Str("last_error", a.Error).Msg("webhook delivery dead-lettered: no 2xx within the delivery window (POST /v1/deliveries/{id}/retry to try again)")
		case !a.OK:
			result = "failed"
			w.d.sampled.Warn().Int64("endpoint_id", ep.ID).Int64("delivery_id", a.DeliveryID).Int("attempt", a.Attempt).
				Str("error", a.Error).Time("next_attempt_at", a.NextAt).Msg("webhook attempt failed")
		}
		w.d.cfg.Metrics.WebhookAttempt(ep.ID, result, a.Duration)
		if i == len(results)-1 {
			if a.OK && w.failed {
				w.d.log.Info().Int64("endpoint_id", ep.ID).Msg("webhook endpoint answers again")
			}
			w.failed = !a.OK
		}
	}
	for _, id := range disabled {
		w.d.log.Error().Int64("endpoint_id", id).Dur("failing_for", w.d.cfg.DisableAfter).
			Msg("webhook endpoint disabled: every attempt failed for too long (PATCH /v1/endpoints/{id} enabled=true to resume where it stopped)")
		w.stop()
	}
}

// attempt sends one delivery and says what came of it.
func (w *worker) attempt(ep *notify.Endpoint, keys [][]byte, d notify.Delivery) notify.Attempt {
	cfg := w.d.cfg
	a := notify.Attempt{DeliveryID: d.ID, EndpointID: ep.ID, Attempt: d.Attempt, StartedAt: time.Now()}
	body, err := json.Marshal(d.Event)
	if err != nil {
		a.Error = "the event does not encode: " + err.Error()
		a.Duration = time.Since(a.StartedAt)
		return a
	}
	// An attempt begun is finished (within Timeout) even when w stops.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(w.ctx), cfg.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, ep.URL, bytes.NewReader(body))
	if err != nil {
		a.Error = "bad request: " + err.Error()
		a.Duration = time.Since(a.StartedAt)
		return a
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", cfg.UserAgent)
	stdwebhook.SetHeaders(req.Header, d.Event.ID, a.StartedAt, body, keys...)
	resp, err := cfg.Client.Do(req)
	if err != nil {
		a.Duration = time.Since(a.StartedAt)
		a.Error = failure(err, ctx, cfg.Timeout)
		return a
	}
	head, rerr := io.ReadAll(io.LimitReader(resp.Body, ResponseLimit))
	var rest int64
	if rerr == nil && resp.StatusCode/100 == 2 {
		// A success is an answer that ends: read (and drop) what remains,
		// up to a bound, within the timeout.
		rest, rerr = io.Copy(io.Discard, io.LimitReader(resp.Body, maxAnswer-ResponseLimit+1))
	}
	resp.Body.Close() // what is left, however long, is never read
	a.Duration = time.Since(a.StartedAt)
	a.StatusCode, a.Response = resp.StatusCode, string(head)
	switch {
	case resp.StatusCode < 200 || resp.StatusCode > 299:
		a.Error = "HTTP " + strconv.Itoa(resp.StatusCode)
		if loc := resp.Header.Get("Location"); resp.StatusCode/100 == 3 && loc != "" {
			a.Error += " to " + notify.Clip(loc) + " (redirects are not followed)"
		}
	case rerr != nil:
		a.Error = "HTTP " + strconv.Itoa(resp.StatusCode) + ", but the answer broke off: " + failure(rerr, ctx, cfg.Timeout)
	case ResponseLimit+rest > maxAnswer:
		a.Error = fmt.Sprintf("HTTP %d, but the answer goes on past %d KiB", resp.StatusCode, maxAnswer>>10)
	default:
		a.OK = true
	}
	return a
}

// maxAnswer is the longest answer a successful attempt may have: a
// receiver whose answer goes on (an endless body) has not answered.
const maxAnswer = 64 << 10

// failure names a transport error.
func failure(err error, ctx context.Context, timeout time.Duration) string {
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		return fmt.Sprintf("no answer within %s", timeout)
	}
	return notify.Clip(err.Error())
}
