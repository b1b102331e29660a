// Package reconcile finds the notifications the gateway lost and repairs
// the state they would have set: it asks Alipay, with each merchant's
// stored app_auth_token, whether the authorization is still valid
// (alipay.open.auth.token.app.query) and what its mini-app's versions'
// statuses are (alipay.open.mini.version.list.query, .detail.query), and
// where the answer differs from the stored state it applies the change
// the matching notification would have made, through the store's
// time-ordered upserts, dated at the query less ClockSkew: it never
// overwrites a notification newer than that, and a later notification
// overwrites it. An authorization is cancelled only while the token Alipay
// judged is still the stored one. Each repair is recorded as drift and
// emits the notification's event.
//
// Work comes in runs (the store's): every Interval, soon after an outage
// this replica saw ends, when a gateway starts after every replica was
// down, and on demand (Start). A run's merchants are its targets; each
// replica running a Reconciler claims them one at a time (a lease), so
// replicas share a run and each merchant is checked once per run, and by
// one replica at a time across overlapping runs (the claim leases the
// merchant too); a replica killed mid-target leaves it to the next claim
// once its lease ends, and a repair repeated then finds the state repaired and writes
// nothing. Calls to Alipay take tokens from the ISV app's reconciliation
// bucket ("openapi:<app_id>:reconcile", shared by the replicas; batches
// have their own, so the app's calls stay within the sum of the rates).
// Whatever a check cannot trust (an error answer, a timeout, an answer
// whose signature does not verify, an unknown status) changes nothing and
// is recorded on the run. docs/reconciliation.md has the details.
package reconcile

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/rs/zerolog"

	"github.com/alipay-notify-gateway/gateway/internal/metrics"
	"github.com/alipay-notify-gateway/gateway/internal/notify"
	"github.com/alipay-notify-gateway/gateway/internal/outbound"
	"github.com/alipay-notify-gateway/gateway/internal/view"
)

// Store is what the reconciler keeps (postgres.DB). Every method returns
// an EUNAVAILABLE *notify.Error when the database cannot be reached.
type Store interface {
	// StartRun starts a run now; for a scoped one it returns ENOTFOUND
	// when there is no such merchant, ECONFLICT when it is cancelled.
	StartRun(ctx context.Context, req notify.RunRequest) (*view.ReconcileRun, error)
	// StartRunIfDue starts a run unless the clock says one started within
	// every; it returns nil then. Replicas asking at once start one.
	StartRunIfDue(ctx context.Context, req notify.RunRequest, clock string, every time.Duration) (*view.ReconcileRun, error)
	// RunStartedWithin reports whether the clock's last run started within
	// d of now (the database's).
	RunStartedWithin(ctx context.Context, clock string, d time.Duration) (bool, error)
	// ClaimTarget leases a pending target of a running run whose merchant
	// no other claim (of any run) holds, and the merchant, or returns nil.
	ClaimTarget(ctx context.Context, appIDs []string, lease time.Duration) (*notify.ReconcileTarget, error)
	// ExtendLease renews t's lease; false when another claim took it.
	ExtendLease(ctx context.Context, t *notify.ReconcileTarget, lease time.Duration) (bool, error)
	// FinishTarget marks t done (false when another claim took it) and
	// finishes the run when it was the last.
	FinishTarget(ctx context.Context, t *notify.ReconcileTarget, checked int) (done, finished bool, err error)
	// FinishIdleRuns finishes the runs with nothing pending.
	FinishIdleRuns(ctx context.Context) ([]int64, error)
	ReconcileSnapshot(ctx context.Context, t *notify.ReconcileTarget) (*notify.ReconcileState, error)
	// Repair applies a repair with its drift record and event, once.
	Repair(ctx context.Context, r notify.Repair) (bool, error)
	RecordReconcileError(ctx context.Context, e notify.ReconcileError) error
	MarkReconciled(ctx context.Context, t *notify.ReconcileTarget, auth, versions bool) error
	// Heartbeat records that a reconciler runs, and returns when one last did.
	Heartbeat(ctx context.Context) (time.Time, error)

	ReconcileRun(ctx context.Context, id int64) (*view.ReconcileRun, error)
	ReconcileRuns(ctx context.Context, f view.RunFilter) ([]*view.ReconcileRun, string, error)
	Drift(ctx context.Context, f view.DriftFilter) ([]*view.Drift, string, error)
}

// Alipay is what the reconciler asks (outbound.Service). Each method
// returns a *outbound.BusinessError for Alipay's error answer, an
// EUPSTREAM *notify.Error when the call failed or its answer cannot be
// trusted, and an ECONFLICT one for a merchant whose token is not to be
// used.
type Alipay interface {
	QueryToken(ctx context.Context, appID, authAppID string) (*outbound.TokenInfo, error)
	MiniVersions(ctx context.Context, appID, authAppID string, statuses []string) ([]outbound.MiniVersion, error)
	MiniVersionDetail(ctx context.Context, appID, authAppID, version, bundleID string) (*outbound.MiniVersionDetail, error)
}

// Limiter is the token buckets the replicas share (postgres.DB.TakeTokens).
type Limiter interface {
	TakeTokens(ctx context.Context, name string, rate, burst float64, want int) (granted int, wait time.Duration, err error)
}

// Config is what New needs. Zero durations take the defaults.
type Config struct {
	Store  Store
	Alipay Alipay
	// Limiter paces the calls, Rate a second per ISV app (0: no limit).
	Limiter Limiter
	Rate    float64
	// AppIDs are the ISV apps that can call Alipay: the runs cover their
	// merchants (outbound.Service.AppIDs).
	AppIDs []string
	// Interval is the time between scheduled runs; 0: none.
	Interval time.Duration
	// AfterOutage: an outage this replica saw that lasted at least this
	// long starts a run when it ends (at most one every OutageGap across
	// replicas), and so does a start after every reconciler was stopped
	// this long; 0: never.
	AfterOutage time.Duration
	// OutageGap is the least time between two outage-triggered runs (30
	// minutes).
	OutageGap time.Duration
	// Health are the readiness checks (the database, the WebSocket
	// channels): while one fails the replica is in an outage.
	Health []func(context.Context) error
	// Deliveries returns the intake's counters of deliveries accepted and
	// refused (metrics.Metrics.DeliveryTotals); nil leaves refusals out.
	Deliveries func() (accepted, refused float64)
	// Poll is how often the replica looks at its health, the schedule and
	// pending work (10s).
	Poll time.Duration
	// Lease is a claim's lease on a target, renewed while it is checked
	// (2 minutes): a replica that dies holds its target that long.
	Lease time.Duration
	// MaxAttempts: a target claimed that often without finishing is given
	// up, recorded as an error (3).
	MaxAttempts int
	// RateLimitRetries is how often a call Alipay answers 40005 is tried
	// again, after RateLimitBackoff doubling (3, 1s).
	RateLimitRetries int
	RateLimitBackoff time.Duration
	// ClockSkew is how far Alipay's clock may be from the gateway's (5
	// minutes, as the token refresher's): an observation is dated at its
	// query's start less ClockSkew, so that a notification Alipay dates
	// within ClockSkew of the query wins over it (the price: such a
	// notification arriving late, older than what Alipay answered, also
	// wins, until the next run).
	ClockSkew time.Duration
	Metrics   *metrics.Metrics
	Logger    zerolog.Logger
	// Now is the clock; time.Now when nil.
	Now func() time.Time
}

// Reconciler runs reconciliation on one replica. It is safe for
// concurrent use.
type Reconciler struct {
	cfg  Config
	log  zerolog.Logger
	wake chan struct{}
	// watch guards det and outage: Watch's state.
	watch sync.Mutex
	det   detector
	// outage is the outage seen whose run is yet to be started, and
	// outageSeen the last observation that saw it (on Now's clock): kept
	// until a run starts here, or one is found started since outageSeen
	// (another replica's, for the same outage), however long OutageGap
	// holds it back.
	outage     string
	outageSeen time.Time
}

// New returns a Reconciler of cfg.
func New(cfg Config) *Reconciler {
	if cfg.Poll <= 0 {
		cfg.Poll = 10 * time.Second
	}
	if cfg.Lease <= 0 {
		cfg.Lease = 2 * time.Minute
	}
	if cfg.MaxAttempts <= 0 {
		cfg.MaxAttempts = 3
	}
	if cfg.RateLimitRetries <= 0 {
		cfg.RateLimitRetries = 3
	}
	if cfg.RateLimitBackoff <= 0 {
		cfg.RateLimitBackoff = time.Second
	}
	if cfg.OutageGap <= 0 {
		cfg.OutageGap = 30 * time.Minute
	}
	if cfg.ClockSkew <= 0 {
		cfg.ClockSkew = 5 * time.Minute
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &Reconciler{cfg: cfg, log: cfg.Logger, wake: make(chan struct{}, 1), det: detector{min: cfg.AfterOutage}}
}

// Start starts a run on demand (POST /v1/reconcile-runs): scope is all,
// auth_app_id or mini_app_id, id the merchant or mini-app of a scoped one,
// appID the ISV app when several could have it. This replica's Run starts
// on it at once; the others at their next poll. It returns an EINVALID
// *notify.Error for a bad scope, and the Store's errors.
func (r *Reconciler) Start(ctx context.Context, scope, id, appID string) (*view.ReconcileRun, error) {
	return r.StartWithReason(ctx, scope, id, appID, "requested over the ops API")
}

// StartWithReason is Start, the run's reason saying who asked (the ops
// console's "requested from the console").
func (r *Reconciler) StartWithReason(ctx context.Context, scope, id, appID, reason string) (*view.ReconcileRun, error) {
	switch {
	case scope != notify.ScopeAll && scope != notify.ScopeMerchant && scope != notify.ScopeMiniApp:
		return nil, notify.Errorf(notify.EINVALID, "bad_scope", "scope must be all, auth_app_id or mini_app_id")
	case scope == notify.ScopeAll && (id != "" || appID != ""):
		return nil, notify.Errorf(notify.EINVALID, "bad_scope", "a run of scope all names no id or app_id")
	case scope != notify.ScopeAll && id == "":
		return nil, notify.Errorf(notify.EINVALID, "bad_scope", "scope %s needs its id", scope)
	}
	run, err := r.cfg.Store.StartRun(ctx, notify.RunRequest{Trigger: notify.RunManual, Scope: scope, ScopeID: id, AppID: appID,
		AppIDs: r.cfg.AppIDs, Reason: reason})
	if err != nil {
		return nil, err
	}
	r.started(run)
	return run, nil
}

// Run reconciles until ctx is done: every Poll it looks at this replica's
// health (outages), the schedule, and the work of the runs under way.
func (r *Reconciler) Run(ctx context.Context) {
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		r.workLoop(ctx)
	}()
	r.watchLoop(ctx)
	wg.Wait()
}

// watchLoop starts the runs that are due, every Poll.
func (r *Reconciler) watchLoop(ctx context.Context) {
	t := time.NewTicker(r.cfg.Poll)
	defer t.Stop()
	first := true
	for {
		if r.Watch(ctx, first) == nil {
			first = false
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// workLoop checks targets while there are any, then waits for the next
// poll or a run started here.
func (r *Reconciler) workLoop(ctx context.Context) {
	t := time.NewTicker(r.cfg.Poll)
	defer t.Stop()
	for {
		if _, err := r.Work(ctx); err != nil && ctx.Err() == nil {
			r.log.Warn().Err(err).Msg("reconcile: work stopped; trying again at the next poll")
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-r.wake:
		}
	}
}

// Watch makes one observation: it records the heartbeat (on the first,
// starting a run when every reconciler was stopped longer than
// AfterOutage), notes this replica's health, and starts the scheduled run
// and the outage run that are due. It returns the store's error.
func (r *Reconciler) Watch(ctx context.Context, first bool) error {
	r.watch.Lock()
	defer r.watch.Unlock()
	now := r.cfg.Now()
	last, err := r.cfg.Store.Heartbeat(ctx)
	if r.cfg.AfterOutage > 0 {
		var health error
		for _, check := range r.cfg.Health {
			if health = check(ctx); health != nil {
				break
			}
		}
		var accepted, refused float64
		if r.cfg.Deliveries != nil {
			accepted, refused = r.cfg.Deliveries()
		}
		if err != nil && health == nil {
			health = err // the database, as the reconciler meets it
		}
		if ended := r.det.observe(now, health, accepted, refused); ended != "" {
			r.outage, r.outageSeen = ended, r.det.last
			r.log.Info().Str("outage", ended).Msg("reconcile: an outage ended")
		}
		if first && err == nil && now.Sub(last) >= r.cfg.AfterOutage {
			r.outage, r.outageSeen = "no reconciler ran for "+now.Sub(last).Round(time.Second).String()+" (every replica down)", now
			r.log.Info().Str("outage", r.outage).Msg("reconcile: an outage ended")
		}
	}
	if err != nil {
		return err
	}
	if r.cfg.Interval > 0 {
		run, err := r.cfg.Store.StartRunIfDue(ctx, notify.RunRequest{Trigger: notify.RunSchedule, Scope: notify.ScopeAll,
			AppIDs: r.cfg.AppIDs, Reason: "every " + r.cfg.Interval.String()}, notify.RunSchedule, r.cfg.Interval)
		if err != nil {
			return err
		}
		r.started(run)
	}
	if r.outage != "" {
		return r.startOutageRun(ctx, now)
	}
	return nil
}

// startOutageRun starts the run of the outage seen, unless OutageGap holds
// it back; the outage is then kept for a later poll, unless an outage run
// started since it was last seen (another replica's, for the same
// outage): that run covers it.
func (r *Reconciler) startOutageRun(ctx context.Context, now time.Time) error {
	run, err := r.cfg.Store.StartRunIfDue(ctx, notify.RunRequest{Trigger: notify.RunOutage, Scope: notify.ScopeAll,
		AppIDs: r.cfg.AppIDs, Reason: r.outage}, notify.RunOutage, r.cfg.OutageGap)
	if err != nil {
		return err
	}
	if run != nil {
		r.outage = ""
		r.started(run)
		return nil
	}
	covered, err := r.cfg.Store.RunStartedWithin(ctx, notify.RunOutage, now.Sub(r.outageSeen))
	if err != nil {
		return err
	}
	if covered {
		r.log.Info().Str("outage", r.outage).Msg("reconcile: an outage run started since the outage ended: it covers it")
		r.outage = ""
	}
	return nil
}

// started logs and counts a run this replica started (none when nil), and
// wakes the work loop.
func (r *Reconciler) started(run *view.ReconcileRun) {
	if run == nil {
		return
	}
	r.cfg.Metrics.ReconcileRun(run.Trigger)
	r.log.Info().Int64("run", run.ID).Str("trigger", run.Trigger).Str("scope", run.Scope).Str("scope_id", run.ScopeID).
		Int("targets", run.Targets).Str("reason", run.Reason).Msg("reconcile run started")
	select {
	case r.wake <- struct{}{}:
	default:
	}
}

// errLost is a target another claim took over.
var errLost = errors.New("reconcile: the target's lease was lost")

// Work claims and checks targets until none is left or ctx is done, and
// returns how many it finished. It returns the store's error, leaving the
// target it held to a later claim.
func (r *Reconciler) Work(ctx context.Context) (int, error) {
	n := 0
	for ctx.Err() == nil {
		t, err := r.cfg.Store.ClaimTarget(ctx, r.cfg.AppIDs, r.cfg.Lease)
		if err != nil {
			return n, err
		}
		if t == nil {
			ids, err := r.cfg.Store.FinishIdleRuns(ctx)
			for _, id := range ids {
				r.finished(ctx, id)
			}
			return n, err
		}
		checked, err := r.check(ctx, t)
		switch {
		case errors.Is(err, errLost):
			continue
		case err != nil:
			return n, err
		}
		done, finished, err := r.cfg.Store.FinishTarget(ctx, t, checked)
		if err != nil {
			return n, err
		}
		if done {
			n++
		}
		if finished {
			r.finished(ctx, t.RunID)
		}
	}
	return n, ctx.Err()
}

// finished logs a run this replica finished.
func (r *Reconciler) finished(ctx context.Context, id int64) {
	run, err := r.cfg.Store.ReconcileRun(ctx, id)
	if err != nil {
		r.log.Info().Int64("run", id).Msg("reconcile run finished")
		return
	}
	ev := r.log.Info()
	if run.Repaired > 0 {
		ev = r.log.Warn() // notifications were lost
	}
	ev = ev.Int64("run", id).Str("trigger", run.Trigger).Int("targets", run.Targets).Int("checked", run.Checked).
		Int("repaired", run.Repaired).Int("errors", run.Errors)
	if run.FinishedAt != nil {
		ev = ev.Dur("took", run.FinishedAt.Sub(run.StartedAt))
	}
	ev.Msg("reconcile run finished")
}

// Runs lists runs, newest first (GET /v1/reconcile-runs).
func (r *Reconciler) Runs(ctx context.Context, f view.RunFilter) ([]*view.ReconcileRun, string, error) {
	return r.cfg.Store.ReconcileRuns(ctx, f)
}

// RunByID returns one run with its first errors (GET /v1/reconcile-runs/{id}).
func (r *Reconciler) RunByID(ctx context.Context, id int64) (*view.ReconcileRun, error) {
	return r.cfg.Store.ReconcileRun(ctx, id)
}

// Drift lists the repairs, newest first (GET /v1/drift).
func (r *Reconciler) Drift(ctx context.Context, f view.DriftFilter) ([]*view.Drift, string, error) {
	return r.cfg.Store.Drift(ctx, f)
}
