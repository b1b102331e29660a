package batchsend

import (
	"context"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/rs/zerolog"

	"github.com/alipay-notify-gateway/gateway/internal/metrics"
	"github.com/alipay-notify-gateway/gateway/internal/notify"
)

// Config is what a Sender needs. Zero values take the defaults.
type Config struct {
	Store    Store
	Bucket   Bucket
	Outbound Outbound
	// Rates are the calls per second of each ISV app, across replicas.
	Rates   Rates
	Metrics *metrics.Metrics
	Logger  zerolog.Logger
	// Concurrency is how many calls this replica has in flight at once,
	// every app together (64).
	Concurrency int
	// Poll is how often an app's loop reads its running batches again,
	// and how long it waits when it has none (1s).
	Poll time.Duration
	// MaxAttempts is how many times a recipient is tried when its calls
	// surely did not reach Alipay (40005, a failure before the request was
	// written) before it is failed with "retries exhausted" (10).
	MaxAttempts int
	// Backoff is the wait before attempt+1 after attempt failed that way
	// (notify.ExpBackoff from RetryBase to RetryCap, ±20%).
	Backoff func(attempt int) time.Duration
	// RateLimitPause is how long an app's sends pause after Alipay
	// answered 40005 (1s): its limit is lower than TEMPLATE_SEND_RATE.
	RateLimitPause time.Duration
	// Lease is how long a claim may go unrecorded before it is taken as
	// lost with its replica and made unknown (Outbound.StaleAfter(): the
	// call's timeout twice, and 30s); Sweep how often expired claims are
	// looked for (a quarter of Lease, 1s to 15s).
	Lease, Sweep time.Duration
}

// Retry schedule of a recipient's calls that surely did not reach Alipay.
const (
	RetryBase   = time.Second
	RetryCap    = 5 * time.Minute
	RetryJitter = 0.2
)

// Timings of an app's loop.
const (
	// recordWait is the longest an outcome waits to be recorded with
	// others, recordBatch how many are recorded at once at most.
	recordWait  = 20 * time.Millisecond
	recordBatch = 128
	// errorPause is the wait after a store error.
	errorPause = time.Second
	// slotWait is the wait for a free call slot taken by another app.
	slotWait = 10 * time.Millisecond
	// tokenNap is the longest an app waits for tokens beyond the next
	// one, so that it takes a few at a time rather than one per query.
	tokenNap = 50 * time.Millisecond
)

// Sender sends the running batches of every app of its Outbound, in this
// replica; the replicas share the work through the store.
type Sender struct {
	cfg     Config
	log     zerolog.Logger
	sampled zerolog.Logger // per-recipient failures
	slots   chan struct{}  // one per call in flight, every app together
}

// New returns a Sender of cfg.
func New(cfg Config) *Sender {
	if cfg.Concurrency <= 0 {
		cfg.Concurrency = 64
	}
	if cfg.Poll <= 0 {
		cfg.Poll = time.Second
	}
	if cfg.MaxAttempts <= 0 {
		cfg.MaxAttempts = 10
	}
	if cfg.Backoff == nil {
		cfg.Backoff = func(attempt int) time.Duration {
			return notify.ExpBackoff(RetryBase, RetryCap, RetryJitter, attempt, nil)
		}
	}
	if cfg.RateLimitPause <= 0 {
		cfg.RateLimitPause = time.Second
	}
	if cfg.Lease <= 0 {
		cfg.Lease = cfg.Outbound.StaleAfter()
	}
	if cfg.Sweep <= 0 {
		cfg.Sweep = min(max(cfg.Lease/4, time.Second), 15*time.Second)
	}
	log := cfg.Logger.With().Str("component", "batchsend").Logger()
	return &Sender{cfg: cfg, log: log, slots: make(chan struct{}, cfg.Concurrency),
		sampled: log.Sample(&zerolog.BurstSampler{Burst: 10, Period: time.Second})}
}

// Run sends until ctx ends, then stops claiming, waits for the calls in
// flight (each bounded by its timeout), records them and returns.
func (s *Sender) Run(ctx context.Context) {
	var wg sync.WaitGroup
	for _, id := range s.cfg.Outbound.AppIDs() {
		a := s.newApp(ctx, id)
		wg.Add(1)
		go func() { defer wg.Done(); a.run() }()
	}
	wg.Add(1)
	go func() { defer wg.Done(); s.sweep(ctx) }()
	s.log.Info().Strs("app_ids", s.cfg.Outbound.AppIDs()).Int("concurrency", s.cfg.Concurrency).Msg("template batch sender started")
	wg.Wait()
}

// sweep makes the expired claims unknown (their replica died) and
// finishes their batches when nothing is left, every Sweep; and samples
// the gauges every 15s.
func (s *Sender) sweep(ctx context.Context) {
	t := time.NewTicker(s.cfg.Sweep)
	defer t.Stop()
	stats := time.NewTicker(15 * time.Second)
	defer stats.Stop()
	s.expire(ctx)
	s.sample(ctx)
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			s.expire(ctx)
		case <-stats.C:
			s.sample(ctx)
		}
	}
}

func (s *Sender) expire(ctx context.Context) {
	expired, err := s.cfg.Store.ExpireClaims(ctx, s.cfg.Lease)
	if err != nil {
		if ctx.Err() == nil {
			s.log.Warn().Err(err).Msg("expired claims not looked for; trying again")
		}
		return
	}
	for _, e := range expired {
		s.cfg.Metrics.BatchUnknown(e.AppID, e.N)
		s.log.Error().Int64("batch_id", e.BatchID).Str("app_id", e.AppID).Int("recipients", e.N).Dur("lease", s.cfg.Lease).
			Msg("template message batch: claims expired unrecorded (a replica stopped mid-send): recipients unknown, never resent without retry-unknown")
		if _, err := s.cfg.Store.FinishBatch(ctx, e.BatchID); err != nil && ctx.Err() == nil {
			s.log.Warn().Err(err).Int64("batch_id", e.BatchID).Msg("template message batch not finished; trying again")
		}
	}
}

func (s *Sender) sample(ctx context.Context) {
	st, err := s.cfg.Store.BatchStats(ctx)
	if err == nil {
		s.cfg.Metrics.BatchGauges(st.Pending, st.Idle)
	}
}

// takeSlots takes up to n call slots without waiting, and says how many.
func (s *Sender) takeSlots(n int) int {
	for i := range n {
		select {
		case s.slots <- struct{}{}:
		default:
			return i
		}
	}
	return n
}

func (s *Sender) releaseSlots(n int) {
	for range n {
		<-s.slots
	}
}

// result is one attempt's outcome, for its app's loop to record.
type result struct {
	batch   *notify.TemplateBatch
	outcome notify.RecipientOutcome
	// metric is the outcome for template_batch_sends_total; took the
	// calls' time.
	metric string
	took   time.Duration
	// stop is why the batch must stop, when every recipient left would
	// fail the same way; pause why it must pause, when that may mend (the
	// merchant's token expired) or an operator must look (an unverified
	// refusal of the whole batch).
	stop, pause string
	// unused is how many tokens were taken and not spent (a pre-check
	// that found no subscription spends one of its two).
	unused int
	// limited: Alipay answered 40005.
	limited bool
}

// app is the loop of one ISV app's batches. Its fields are its
// goroutine's; sends report through results.
type app struct {
	s       *Sender
	ctx     context.Context
	id      string
	rate    float64
	burst   float64
	chunk   int
	bucket  string
	rand    *rand.Rand
	results chan result

	batches   []*notify.TemplateBatch
	refreshed time.Time
	next      int              // the batch to claim from next (round robin)
	drained   map[int64]bool   // its claim found nothing due: not claimed from until the next refresh
	finishing map[int64]bool   // drained, nothing in flight: to finish once its outcomes are recorded
	inFlight  map[int64]int    // calls in flight by batch
	total     int              // calls in flight
	done      []result         // not yet recorded
	oldest    time.Time        // when the oldest of done arrived
	until     time.Time        // no claim before then
	stopped   map[int64]string // batches stopped by this loop
	paused    map[int64]bool   // batches paused by this loop, until the next refresh
	urgent    bool             // an outcome of done says to stop or pause its batch
}

func (s *Sender) newApp(ctx context.Context, id string) *app {
	rate := s.cfg.Rates.Of(id)
	return &app{s: s, ctx: ctx, id: id, rate: rate, burst: burst(rate), chunk: chunk(rate, s.cfg.Concurrency),
		bucket: BucketName(id), rand: rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), uint64(len(id)))),
		results: make(chan result, s.cfg.Concurrency), drained: map[int64]bool{}, finishing: map[int64]bool{},
		inFlight: map[int64]int{}, stopped: map[int64]string{}, paused: map[int64]bool{}}
}

// run loops until the context ends, then finishes the calls it began and
// records them.
func (a *app) run() {
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		stopping := a.ctx.Err() != nil
		if stopping && a.total == 0 {
			a.record()
			return
		}
		// Record first what says to stop or pause a batch: no claim of it
		// before.
		if a.urgent || len(a.done) >= recordBatch || len(a.done) > 0 && (a.total == 0 || !time.Now().Before(a.oldest.Add(recordWait))) {
			a.record()
		}
		wait := time.Hour // a result comes before then: every call has a timeout
		if !stopping {
			wait = a.claim()
		}
		if len(a.done) > 0 {
			wait = min(wait, time.Until(a.oldest.Add(recordWait)))
		}
		if wait <= 0 {
			// Take what has come in, then claim again.
			select {
			case r := <-a.results:
				a.take(r)
			default:
			}
			continue
		}
		if !timer.Stop() {
			select {
			case <-timer.C:
			default:
			}
		}
		timer.Reset(wait)
		var cancelled <-chan struct{}
		if !stopping {
			cancelled = a.ctx.Done()
		}
		select {
		case r := <-a.results:
			a.take(r)
		case <-timer.C:
		case <-cancelled:
		}
	}
}

// takeReady takes the results already handed over, without waiting.
func (a *app) takeReady() {
	for {
		select {
		case r := <-a.results:
			a.take(r)
		default:
			return
		}
	}
}

// take accounts for a call's result.
func (a *app) take(r result) {
	if len(a.done) == 0 {
		a.oldest = time.Now()
	}
	a.done = append(a.done, r)
	a.total--
	if a.inFlight[r.batch.ID]--; a.inFlight[r.batch.ID] == 0 {
		delete(a.inFlight, r.batch.ID)
		if a.drained[r.batch.ID] {
			a.finishing[r.batch.ID] = true
		}
	}
	if r.limited {
		a.until = time.Now().Add(a.s.cfg.RateLimitPause)
	}
	a.urgent = a.urgent || r.stop != "" || r.pause != ""
}

// claim claims what it can and starts the calls, and returns how long to
// wait before claiming again (0: at once).
func (a *app) claim() time.Duration {
	cfg := a.s.cfg
	now := time.Now()
	if now.Before(a.until) {
		return a.until.Sub(now)
	}
	if len(a.batches) == 0 || now.Sub(a.refreshed) >= cfg.Poll {
		if !a.refresh(now) {
			return errorPause
		}
	}
	b := a.pick()
	if b == nil {
		a.until = now.Add(cfg.Poll)
		a.refreshed = time.Time{} // read them again then
		return cfg.Poll
	}
	per := 1
	if b.Precheck {
		per = 2 // the query, then the send
	}
	want := max(1, a.chunk/per)
	if a.rate <= 0 {
		want = cfg.Concurrency
	}
	n := a.s.takeSlots(want)
	// A call releases its slot after handing over its result: take the
	// results that came in before these slots were free, and record first
	// if one says to stop or pause its batch, so that no call follows it.
	a.takeReady()
	if a.urgent {
		a.s.releaseSlots(n)
		return 0
	}
	// Without a limit, claim a quarter of the slots at once at least
	// (when some calls are in flight), so that claims come in batches.
	if n == 0 || a.rate <= 0 && a.total > 0 && n < max(1, cfg.Concurrency/4) {
		a.s.releaseSlots(n)
		return slotWait
	}
	granted, wait, err := cfg.Bucket.TakeTokens(a.ctx, a.bucket, a.rate, a.burst, n*per)
	if err != nil {
		a.s.releaseSlots(n)
		a.storeError(err, "rate tokens not taken")
		return errorPause
	}
	k := granted / per
	a.giveBack(granted - k*per)
	a.s.releaseSlots(n - k)
	if k == 0 {
		nap := max(wait, min(tokenNap, time.Duration(float64(want*per)/a.rate/2*float64(time.Second))))
		nap += time.Duration(a.rand.Float64() * 0.1 * float64(nap))
		cfg.Metrics.BatchRateWait(a.id, nap)
		return nap
	}
	token := ""
	if b.AuthAppID != "" {
		// Per claim, so that a cancellation that arrived meanwhile stops
		// the batch before another call.
		token, err = cfg.Outbound.MerchantToken(a.ctx, a.id, b.AuthAppID)
		if err != nil {
			a.s.releaseSlots(k)
			a.giveBack(k * per)
			stop, pause := tokenHalt(err)
			switch {
			case stop != "":
				a.stop(b, stop, notify.ErrorMessage(err))
				return 0
			case pause != "":
				a.pause(b, pause, notify.ErrorMessage(err))
				return 0
			}
			a.storeError(err, "merchant token not read")
			return errorPause
		}
	}
	claimed, err := cfg.Store.ClaimRecipients(a.ctx, b.ID, k)
	if err != nil {
		a.s.releaseSlots(k)
		a.giveBack(k * per)
		a.storeError(err, "recipients not claimed")
		return errorPause
	}
	if len(claimed) < k {
		a.s.releaseSlots(k - len(claimed))
		a.giveBack((k - len(claimed)) * per)
		a.drained[b.ID] = true
		if len(claimed) == 0 && a.inFlight[b.ID] == 0 {
			if len(a.done) == 0 {
				a.finish(b.ID)
			} else {
				a.finishing[b.ID] = true // once the outcomes taken are recorded
			}
		}
	}
	for _, c := range claimed {
		a.inFlight[b.ID]++
		a.total++
		go a.send(b, token, c)
	}
	return 0
}

// refresh reads the app's running batches again; false on a store error.
func (a *app) refresh(now time.Time) bool {
	batches, err := a.s.cfg.Store.RunningBatches(a.ctx, []string{a.id})
	if err != nil {
		a.storeError(err, "running batches not read")
		return false
	}
	a.batches, a.refreshed = batches, now
	// Claimed from again: retries come due. Those that ended are gone,
	// and so are those paused (until they are resumed).
	clear(a.drained)
	clear(a.paused)
	return true
}

// pick returns the next batch to claim from, round robin over those not
// drained, stopped or paused; nil when there is none.
func (a *app) pick() *notify.TemplateBatch {
	for i := range a.batches {
		b := a.batches[(a.next+i)%len(a.batches)]
		if !a.drained[b.ID] && a.stopped[b.ID] == "" && !a.paused[b.ID] {
			a.next = (a.next + i + 1) % len(a.batches)
			return b
		}
	}
	return nil
}

// finish marks batch id finished if nothing is left of it.
func (a *app) finish(id int64) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(a.ctx), 10*time.Second)
	defer cancel()
	finished, err := a.s.cfg.Store.FinishBatch(ctx, id)
	if err != nil {
		a.storeError(err, "batch not finished")
		return
	}
	if finished {
		a.s.log.Info().Int64("batch_id", id).Str("app_id", a.id).Msg("template message batch finished")
	}
}

// stop stops batch b for reason, once.
func (a *app) stop(b *notify.TemplateBatch, reason, why string) {
	if a.stopped[b.ID] != "" {
		return
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(a.ctx), 10*time.Second)
	defer cancel()
	stopped, err := a.s.cfg.Store.StopBatch(ctx, b.ID, reason)
	if err != nil {
		a.storeError(err, "batch not stopped")
		return
	}
	a.stopped[b.ID] = reason
	if stopped {
		a.s.cfg.Metrics.BatchStopped(reason)
		a.s.log.Error().Int64("batch_id", b.ID).Str("app_id", a.id).Str("auth_app_id", b.AuthAppID).Str("stop_reason", reason).
			Str("error", why).Msg("template message batch stopped: every recipient left would fail the same way; its pending recipients are cancelled")
	}
}

// pause pauses running batch b for reason, once until the next refresh
// (an operator's resume makes it running again; a batch an operator
// paused, or that ended, stays as it is).
func (a *app) pause(b *notify.TemplateBatch, reason, why string) {
	if a.paused[b.ID] || a.stopped[b.ID] != "" {
		return
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(a.ctx), 10*time.Second)
	defer cancel()
	paused, err := a.s.cfg.Store.PauseBatchFor(ctx, b.ID, reason)
	if err != nil {
		a.storeError(err, "batch not paused")
		return
	}
	a.paused[b.ID] = true
	if paused {
		a.s.cfg.Metrics.BatchPaused(reason)
		a.s.log.Error().Int64("batch_id", b.ID).Str("app_id", a.id).Str("auth_app_id", b.AuthAppID).Str("pause_reason", reason).
			Str("error", why).Msg("template message batch paused: resume it once the cause is mended (its recipients wait, pending)")
	}
}

// giveBack returns n unused tokens to the bucket.
func (a *app) giveBack(n int) {
	if n <= 0 || a.rate <= 0 {
		return
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(a.ctx), 5*time.Second)
	defer cancel()
	if err := a.s.cfg.Bucket.ReturnTokens(ctx, a.bucket, n); err != nil {
		a.storeError(err, "unused rate tokens not returned")
	}
}

func (a *app) storeError(err error, what string) {
	if a.ctx.Err() != nil {
		return
	}
	a.s.sampled.Warn().Err(err).Str("app_id", a.id).Msg("template batch: " + what + "; trying again")
}

// send makes recipient c's call (after its pre-check, for a batch that
// asks for one) and reports the outcome. It runs to its end whatever the
// context does: every call made is recorded.
func (a *app) send(b *notify.TemplateBatch, token string, c notify.ClaimedRecipient) {
	defer a.s.releaseSlots(1)
	a.results <- a.s.attempt(context.WithoutCancel(a.ctx), a.id, b, token, c)
}

// record writes the outcomes that came in, counts and logs them, stops the
// batches they say to stop, and finishes the drained batches with nothing
// left in flight. It records them even when the loop is stopping: a call
// made is not forgotten. An outcome not recorded leaves its recipient
// sending until its claim expires: unknown.
func (a *app) record() {
	if len(a.done) == 0 {
		return
	}
	done := a.done
	a.done, a.urgent = nil, false
	outcomes := make([]notify.RecipientOutcome, len(done))
	unused := 0
	for i, r := range done {
		outcomes[i] = r.outcome
		unused += r.unused
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(a.ctx), 10*time.Second)
	defer cancel()
	var (
		n   int
		err error
	)
	for try := 0; try < 3; try++ {
		if n, err = a.s.cfg.Store.RecordRecipients(ctx, outcomes); err == nil || ctx.Err() != nil {
			break
		}
		time.Sleep(500 * time.Millisecond)
	}
	switch {
	case err != nil:
		a.s.log.Error().Err(err).Str("app_id", a.id).Int("outcomes", len(outcomes)).
			Msg("template batch outcomes not recorded: their recipients become unknown when their claims expire")
	case n < len(outcomes):
		a.s.log.Warn().Str("app_id", a.id).Int("late", len(outcomes)-n).
			Msg("template batch outcomes came after their claims had expired and were not sent nor refused (signed): the recipients stay unknown")
	}
	for _, r := range done {
		if r.metric != "" {
			a.s.cfg.Metrics.BatchSend(a.id, r.metric, r.took)
		}
		o := r.outcome
		switch o.Status {
		case notify.RecipientFailed, notify.RecipientUnknown:
			a.s.sampled.Warn().Int64("batch_id", o.BatchID).Int("row", o.Seq).Str("status", o.Status).Str("code", o.Code).
				Str("sub_code", o.SubCode).Str("error", o.Error).Msg("template batch recipient not sent")
		}
		switch {
		case r.stop != "":
			a.stop(r.batch, r.stop, o.Error)
		case r.pause != "":
			a.pause(r.batch, r.pause, o.Error)
		}
	}
	a.giveBack(unused)
	for id := range a.finishing {
		if a.inFlight[id] == 0 {
			a.finish(id)
		}
		delete(a.finishing, id)
	}
}
