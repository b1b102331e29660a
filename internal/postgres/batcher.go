package postgres

import (
	"context"
	"math"
	"sync"
	"sync/atomic"
	"time"

	"github.com/alipay-notify-gateway/gateway/internal/notify"
)

// BatcherConfig tunes group commit.
type BatcherConfig struct {
	// MaxBatch caps the notifications in one transaction.
	MaxBatch int
	// MaxWait is how long a batch may wait to fill while another
	// transaction is committing and notifications are on their way (see
	// Arriving). Otherwise a batch is flushed at once: a lone notification
	// pays no wait, and no batch waits for what is not coming.
	MaxWait time.Duration
	// Flushers is how many transactions may be in flight at once.
	Flushers int
	// Timeout bounds one batch's transaction.
	Timeout time.Duration
	// OnBatch, when set, is told each committed batch's size.
	OnBatch func(size int)
}

// Batcher is a notify.Inbox that commits concurrent notifications together
// (group commit): one transaction, a few round trips, one WAL flush for a
// whole batch. Each Ingest still returns only after its own batch commits.
type Batcher struct {
	db   *DB
	cfg  BatcherConfig
	reqs chan *request
	busy atomic.Int32 // transactions in flight
	// arriving counts the notifications being read and verified (see
	// Arriving): those a filling batch may wait for.
	arriving atomic.Int32
	// inflight counts the notifications in Ingest: queued or committing.
	inflight atomic.Int32
	wg       sync.WaitGroup

	// load is the notifications on their way or in Ingest, smoothed
	// (sampled at each batch, an exponential average over loadTau), as of
	// loadAt: what Busy compares with BusyLoad.
	loadMu sync.Mutex
	load   float64
	loadAt time.Time

	mu     sync.RWMutex
	closed bool
}

type request struct {
	d    notify.Decided
	done chan Result
}

// NewBatcher starts a Batcher over db. Zero fields of cfg take defaults:
// MaxBatch 128, MaxWait 1ms, Flushers 2, Timeout 15s.
func NewBatcher(db *DB, cfg BatcherConfig) *Batcher {
	if cfg.MaxBatch <= 0 {
		cfg.MaxBatch = 128
	}
	if cfg.MaxWait <= 0 {
		cfg.MaxWait = time.Millisecond
	}
	if cfg.Flushers <= 0 {
		cfg.Flushers = 2
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 15 * time.Second
	}
	b := &Batcher{db: db, cfg: cfg, reqs: make(chan *request, cfg.MaxBatch*cfg.Flushers)}
	for range cfg.Flushers {
		b.wg.Add(1)
		go b.flusher()
	}
	return b
}

// Ingest queues d for the next batch and returns once that batch is
// committed, with d's outcome (see DB.Ingest). It returns an EUNAVAILABLE
// *notify.Error when the database is unavailable or the Batcher is closed,
// and when ctx ends first (d may still be committed: a resend is then a
// duplicate).
func (b *Batcher) Ingest(ctx context.Context, d notify.Decided) (notify.Outcome, error) {
	req := &request{d: d, done: make(chan Result, 1)}
	b.inflight.Add(1)
	defer b.inflight.Add(-1)
	b.mu.RLock()
	if b.closed {
		b.mu.RUnlock()
		return notify.Outcome{}, notify.Errorf(notify.EUNAVAILABLE, "shutting_down", "the gateway is shutting down")
	}
	select {
	case b.reqs <- req:
		b.mu.RUnlock()
	case <-ctx.Done():
		b.mu.RUnlock()
		return notify.Outcome{}, notify.Errorf(notify.EUNAVAILABLE, "timeout", "not queued: %v", ctx.Err())
	}
	select {
	case r := <-req.done:
		return r.Outcome, r.Err
	case <-ctx.Done():
		return notify.Outcome{}, notify.Errorf(notify.EUNAVAILABLE, "timeout", "commit not confirmed: %v", ctx.Err())
	}
}

// Arriving tells b that one more notification is on its way (being read
// and verified): a filling batch may wait for it (see MaxWait). With
// Arrived, it implements notify.Arrivals. A notification that is never
// announced joins whatever batch is filling when it is queued.
func (b *Batcher) Arriving() { b.arriving.Add(1) }

// Arrived tells b that a notification announced by Arriving has reached
// Ingest, or was refused.
func (b *Batcher) Arrived() { b.arriving.Add(-1) }

// BusyLoad is how many notifications on their way to the inbox or in it,
// on average over about loadTau, make intake busy (Busy). Measured with
// make bench on 2 CPUs (the load sampled every 5 ms): at 1,000
// notifications a second, a quarter of what the machine takes, 2 to 7
// (one sample in ten above 8, briefly); saturated by 64 connections, 39 or
// more. A busy intake is one that has notifications waiting for it.
const BusyLoad = 12

// loadTau is the time constant of the smoothed load: short enough that
// Busy follows a burst within a few tenths of a second, long enough that a
// moment's queue at a moderate rate is not taken for a busy intake.
const loadTau = 100 * time.Millisecond

// sampleLoad folds the current load into the smoothed one.
func (b *Batcher) sampleLoad(now time.Time) {
	x := float64(b.arriving.Load() + b.inflight.Load())
	b.loadMu.Lock()
	w := math.Exp(-float64(now.Sub(b.loadAt)) / float64(loadTau))
	b.load, b.loadAt = w*b.load+(1-w)*x, now
	b.loadMu.Unlock()
}

// Busy reports whether intake is busy: BusyLoad or more notifications being
// verified, queued or committed, on average over the last loadTau or so
// (the average decays while no batch comes). The webhook dispatcher yields
// to it.
func (b *Batcher) Busy() bool {
	now := time.Now()
	b.loadMu.Lock()
	load := b.load * math.Exp(-float64(now.Sub(b.loadAt))/float64(loadTau))
	b.loadMu.Unlock()
	return load >= BusyLoad
}

// Close stops taking notifications, commits those queued, and returns when
// every batch is done.
func (b *Batcher) Close() {
	b.mu.Lock()
	if !b.closed {
		b.closed = true
		close(b.reqs)
	}
	b.mu.Unlock()
	b.wg.Wait()
}

func (b *Batcher) flusher() {
	defer b.wg.Done()
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	for {
		first, ok := <-b.reqs
		if !ok {
			return
		}
		batch := b.fill([]*request{first}, timer)
		b.flush(batch)
	}
}

// fill adds to batch what is queued and, while another transaction is
// committing and notifications are on their way, what arrives within
// MaxWait, up to MaxBatch. With nothing committing, or nothing coming, there
// is no reason to wait: the batch goes at once.
func (b *Batcher) fill(batch []*request, timer *time.Timer) []*request {
	var deadline <-chan time.Time // nil until the batch starts waiting
	for len(batch) < b.cfg.MaxBatch {
		select {
		case r, ok := <-b.reqs:
			if !ok {
				return batch
			}
			batch = append(batch, r)
			continue
		default:
		}
		if deadline == nil && b.busy.Load() == 0 || b.arriving.Load() <= 0 {
			return batch
		}
		if deadline == nil {
			timer.Reset(b.cfg.MaxWait)
			defer timer.Stop()
			deadline = timer.C
		}
		select {
		case r, ok := <-b.reqs:
			if !ok {
				return batch
			}
			batch = append(batch, r)
		case <-deadline:
			return batch
		}
	}
	return batch
}

func (b *Batcher) flush(batch []*request) {
	b.sampleLoad(time.Now())
	b.busy.Add(1)
	defer b.busy.Add(-1)
	ds := make([]notify.Decided, len(batch))
	for i, r := range batch {
		ds[i] = r.d
	}
	ctx, cancel := context.WithTimeout(context.Background(), b.cfg.Timeout)
	results := b.db.IngestBatch(ctx, ds)
	cancel()
	if b.cfg.OnBatch != nil && results[0].Err == nil {
		b.cfg.OnBatch(len(batch))
	}
	for i, r := range batch {
		r.done <- results[i]
	}
}
