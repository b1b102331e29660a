// Package retention prunes what notify.Retention no longer keeps, off the
// hot path: in every replica a Pruner wakes every Interval, and the one
// that takes the prune lock deletes, Batch rows at a time, what is older
// than each retention, yielding to intake while it is busy. It also keeps
// the retention metrics (table sizes, the oldest failed notification).
package retention

import (
	"context"
	"sync"
	"time"

	"github.com/rs/zerolog"

	"github.com/alipay-notify-gateway/gateway/internal/notify"
)

// Store is what a Pruner needs of the database (postgres.DB).
type Store interface {
	// StartPruning takes the prune lock: nil when another replica holds it.
	StartPruning(ctx context.Context) (notify.Pruning, error)
	TableSizes(ctx context.Context) (map[string]int64, error)
}

// Metrics is what a Pruner reports.
type Metrics interface {
	Pruned(what string, n int64)
	TableSizes(bytes map[string]int64)
}

// Config configures a Pruner. Zero fields take defaults: Interval 1h,
// Batch 1000, Pause 10ms, Duty 0.25, BusyEvery 5s.
type Config struct {
	Store     Store
	Retention notify.Retention
	// Interval is the time between two prunes.
	Interval time.Duration
	// Batch is how many rows one statement deletes at most: a short
	// transaction, holding locks on those rows only.
	Batch int
	// Pause is the shortest wait between two batches.
	Pause time.Duration
	// Duty is the share of its time a prune spends deleting: after a
	// batch that took d it waits d×(1-Duty)/Duty (at Duty 0.25, three
	// times as long), so that it never takes more than a fraction of a
	// CPU of Postgres away from intake.
	Duty float64
	// Busy, when set, says that this replica's intake is busy (the
	// postgres Batcher's Busy): the prune then deletes one batch every
	// BusyEvery only, so that it yields to intake and still progresses.
	Busy      func() bool
	BusyEvery time.Duration
	Metrics   Metrics // may be nil
	Logger    zerolog.Logger
	// Now, when set, is the clock (tests).
	Now func() time.Time
}

// Pruner prunes on a schedule. Start it with Start, stop it with Stop.
type Pruner struct {
	cfg    Config
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// New returns a Pruner of cfg.
func New(cfg Config) *Pruner {
	if cfg.Interval <= 0 {
		cfg.Interval = time.Hour
	}
	if cfg.Batch <= 0 {
		cfg.Batch = 1000
	}
	if cfg.Pause <= 0 {
		cfg.Pause = 10 * time.Millisecond
	}
	if cfg.Duty <= 0 || cfg.Duty > 1 {
		cfg.Duty = 0.25
	}
	if cfg.BusyEvery <= 0 {
		cfg.BusyEvery = 5 * time.Second
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &Pruner{cfg: cfg}
}

// Start prunes a minute after it is called (the gateway's start is not
// slowed; sooner when Interval is shorter), then every Interval, until Stop.
func (p *Pruner) Start() {
	ctx, cancel := context.WithCancel(context.Background())
	p.cancel = cancel
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		timer := time.NewTimer(min(time.Minute, p.cfg.Interval))
		defer timer.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-timer.C:
			}
			if _, err := p.Run(ctx); err != nil && ctx.Err() == nil {
				p.cfg.Logger.Warn().Err(err).Msg("retention: the prune stopped; it goes on at the next")
			}
			p.gauges(ctx)
			timer.Reset(p.cfg.Interval)
		}
	}()
}

// Stop ends the prune in progress (after its current batch) and returns.
func (p *Pruner) Stop() {
	if p.cancel != nil {
		p.cancel()
	}
	p.wg.Wait()
}

// Result is what a prune deleted.
type Result struct {
	// Ran is false when another replica held the prune lock.
	Ran     bool
	Deleted map[notify.Prunable]int64
}

// Run prunes once: everything older than each retention, Batch rows at a
// time, unless another replica is pruning (Result.Ran false). It returns
// what it deleted, with an EUNAVAILABLE *notify.Error when the database
// cannot be reached, or ctx's error when ctx ends first.
func (p *Pruner) Run(ctx context.Context) (Result, error) {
	res := Result{Deleted: map[notify.Prunable]int64{}}
	cutoffs := p.cfg.Retention.Cutoffs(p.cfg.Now())
	if len(cutoffs) == 0 {
		return res, nil
	}
	pr, err := p.cfg.Store.StartPruning(ctx)
	if err != nil || pr == nil {
		return res, err
	}
	defer pr.Done()
	res.Ran = true
	start := time.Now()
	var last, took time.Duration // the last batch's start (since start) and duration
	for _, c := range cutoffs {
		for {
			if err := p.yield(ctx, start, last, took); err != nil {
				return res, err
			}
			last = time.Since(start)
			n, err := pr.Prune(ctx, c, p.cfg.Batch)
			took = time.Since(start) - last
			res.Deleted[c.What] += n
			if p.cfg.Metrics != nil && n > 0 {
				p.cfg.Metrics.Pruned(string(c.What), n)
			}
			if err != nil {
				return res, err
			}
			if n < int64(p.cfg.Batch) {
				break
			}
		}
		if res.Deleted[c.What] > 0 {
			p.cfg.Logger.Info().Str("pruned", string(c.What)).Time("before", c.Before).Int64("rows", res.Deleted[c.What]).Msg("retention: pruned")
		}
	}
	p.cfg.Logger.Debug().Dur("took", time.Since(start)).Msg("retention: prune done")
	return res, nil
}

// yield waits before the next batch: Pause at least, and as long as the
// last batch (begun at last since start, taking took) keeps the prune
// within its Duty; while intake is busy, until BusyEvery after the last
// batch began.
func (p *Pruner) yield(ctx context.Context, start time.Time, last, took time.Duration) error {
	rest := time.Duration(float64(took) * (1 - p.cfg.Duty) / p.cfg.Duty)
	wait := max(p.cfg.Pause, rest)
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(wait):
		}
		if p.cfg.Busy == nil || !p.cfg.Busy() {
			return nil
		}
		next := last + p.cfg.BusyEvery // since start
		if wait = next - time.Since(start); wait <= 0 {
			return nil
		}
		wait = min(wait, 100*time.Millisecond) // look again soon: intake may ease
	}
}

// gauges samples the retention metrics.
func (p *Pruner) gauges(ctx context.Context) {
	if p.cfg.Metrics == nil {
		return
	}
	sizes, err := p.cfg.Store.TableSizes(ctx)
	if err != nil {
		if ctx.Err() == nil {
			p.cfg.Logger.Warn().Err(err).Msg("retention: the table sizes are not measured")
		}
		return
	}
	p.cfg.Metrics.TableSizes(sizes)
}
