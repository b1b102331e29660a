package webhook

import (
	"context"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/alipay-notify-gateway/gateway/internal/notify"
	"github.com/alipay-notify-gateway/gateway/internal/stdwebhook"
)

// worker delivers to one endpoint: it claims deliveries (a fan-out of the
// new events, then the due retries) into a local queue of at most Batch,
// keeps Concurrency attempts going from it, and records the results a
// few at a time. An attempt that hangs until its timeout holds one sender,
// not the others.
type worker struct {
	d    *Dispatcher
	ctx  context.Context
	stop context.CancelFunc
	rand *rand.Rand

	mu   sync.Mutex
	ep   *notify.Endpoint
	keys [][]byte

	// failed: the last recorded attempt failed, so the next success is
	// logged.
	failed bool
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

func (w *worker) endpoint() (*notify.Endpoint, [][]byte) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.ep, w.keys
}

// backoff is the wait after attempt failed.
func (w *worker) backoff(attempt int) time.Duration {
	if w.d.cfg.Backoff != nil {
		return w.d.cfg.Backoff(attempt)
	}
	return notify.Backoff(attempt, w.rand)
}

// Timings of a worker's loop.
const (
	// yieldPause is how long a worker waits between claims while intake
	// is busy (Config.Busy).
	yieldPause = 250 * time.Millisecond
	// recordWait is the longest a result waits to be recorded with others.
	recordWait = 20 * time.Millisecond
)

// run loops until w is stopped, then finishes the attempts it began and
// records them. It claims when its queue and the attempts in flight are
// down to half a Batch (so that claims come in batches), or at once when
// idle; when nothing is claimed it waits Poll. It records results half a
// Batch at a time, or when none is in flight, or after recordWait. While
// intake is busy it claims at most Concurrency deliveries every
// yieldPause: intake first, and the webhooks never starve.
func (w *worker) run() {
	cfg := w.d.cfg
	jobs := make(chan notify.Delivery)
	results := make(chan notify.Attempt, cfg.Concurrency)
	var senders sync.WaitGroup
	for range cfg.Concurrency {
		senders.Add(1)
		go func() {
			defer senders.Done()
			for d := range jobs {
				ep, keys := w.endpoint()
				results <- w.attempt(ep, keys, d)
			}
		}()
	}
	defer senders.Wait()
	defer close(jobs)

	var (
		queue     []notify.Delivery // claimed, not yet begun
		inFlight  int
		done      []notify.Attempt // results not yet recorded
		expires   = map[int64]time.Time{}
		lastClaim time.Time
		idleUntil time.Time // nothing to claim before then
	)
	record := func() {
		if len(done) > 0 {
			w.record(done, expires)
			done = done[:0]
		}
	}
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		stopping := w.ctx.Err() != nil
		if stopping && inFlight == 0 {
			record()
			return
		}
		busy := cfg.Busy != nil && cfg.Busy()
		now := time.Now()
		if !stopping && len(queue)+inFlight <= cfg.Batch/2 && !now.Before(idleUntil) && (!busy || now.Sub(lastClaim) >= yieldPause) {
			n := cfg.Batch - len(queue) - inFlight
			if busy {
				n = min(n, cfg.Concurrency)
			}
			claimed, more, err := w.claim(n, busy)
			lastClaim = now
			switch {
			case err != nil:
				idleUntil = now.Add(time.Second)
			case len(claimed) == 0 && !more:
				idleUntil = now.Add(cfg.Poll)
			}
			for _, d := range claimed {
				expires[d.ID] = d.ExpiresAt
			}
			queue = append(queue, claimed...)
		}
		// Start what the senders can take.
		for len(queue) > 0 && inFlight < cfg.Concurrency && !stopping {
			jobs <- queue[0]
			queue, inFlight = queue[1:], inFlight+1
		}
		if stopping {
			queue = nil // claimed, not begun: their leases end, and they are attempted again
		}
		if len(done) >= cfg.Batch/2 || len(done) > 0 && inFlight == 0 {
			record()
		}
		// Wait for a result, the next claim, or a record that is due.
		wait := time.Hour // a result comes before then: every attempt has a timeout
		if !stopping && len(queue)+inFlight <= cfg.Batch/2 {
			next := idleUntil
			if busy && lastClaim.Add(yieldPause).After(next) {
				next = lastClaim.Add(yieldPause)
			}
			wait = time.Until(next)
		}
		if len(done) > 0 {
			wait = min(wait, recordWait)
		}
		if !timer.Stop() {
			select {
			case <-timer.C:
			default:
			}
		}
		timer.Reset(max(wait, 0))
		var cancelled <-chan struct{}
		if !stopping {
			cancelled = w.ctx.Done()
		}
		select {
		case a := <-results:
			done, inFlight = append(done, a), inFlight-1
		case <-timer.C:
			record()
		case <-cancelled:
		}
	}
}

// claim fans out the new events to the endpoint, claiming up to n of
// them, and claims due retries to make up n. It reads up to fanOutLimit
// events of the feed (those past n are given deliveries, due now), or,
// while intake is busy, n: then nothing is written that is not attempted
// at once. more reports that the feed may hold more right now. A store
// error is logged (sampled).
func (w *worker) claim(n int, busy bool) (claimed []notify.Delivery, more bool, err error) {
	cfg := w.d.cfg
	ep, _ := w.endpoint()
	limit := fanOutLimit
	if busy {
		limit = n
	}
	claimed, read, err := cfg.Store.FanOut(w.ctx, ep.ID, limit, n, cfg.Window, w.d.lease())
	if err != nil {
		w.storeError(err, "events not given to the endpoint")
		return nil, false, err
	}
	if len(claimed) < n {
		retries, err := cfg.Store.ClaimDeliveries(w.ctx, ep.ID, n-len(claimed), w.d.lease())
		if err != nil {
			w.storeError(err, "deliveries not claimed")
			return claimed, false, nil
		}
		claimed = append(claimed, retries...)
	}
	return claimed, read == limit || len(claimed) == n, nil
}

func (w *worker) storeError(err error, what string) {
	if w.ctx.Err() != nil {
		return
	}
	ep, _ := w.endpoint()
	w.d.sampled.Warn().Err(err).Int64("endpoint_id", ep.ID).Msg("webhook: " + what + "; trying again")
}

// record schedules the attempts' retries and records them. It records
// them even when w is being stopped: an attempt made is not forgotten.
func (w *worker) record(done []notify.Attempt, expires map[int64]time.Time) {
	cfg := w.d.cfg
	ep, _ := w.endpoint()
	now := time.Now()
	results := make([]notify.Attempt, len(done))
	for i, a := range done {
		wait := time.Duration(0)
		if !a.OK {
			wait = w.backoff(a.Attempt)
		}
		a.Schedule(expires[a.DeliveryID], now, wait)
		delete(expires, a.DeliveryID)
		results[i] = a
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
