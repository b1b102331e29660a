package reconcile_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/alipay-notify-gateway/gateway/internal/notify"
	"github.com/alipay-notify-gateway/gateway/internal/openapisim"
	"github.com/alipay-notify-gateway/gateway/internal/outbound"
	"github.com/alipay-notify-gateway/gateway/internal/reconcile"
	"github.com/alipay-notify-gateway/gateway/internal/testkit"
	"github.com/alipay-notify-gateway/gateway/internal/view"
)

// TestReconciler_OverlappingRuns: two runs of every merchant at once (an
// on-demand run during a scheduled one), worked by two replicas: no
// merchant is checked by both at once, one waits for the other, and each
// run still checks every merchant.
func TestReconciler_OverlappingRuns(t *testing.T) {
	t.Parallel()
	e := newEnv(t, 2*time.Second)
	ctx := context.Background()
	const merchants = 4
	ids := make([]string, merchants)
	for i := range ids {
		ids[i] = fmt.Sprintf("202100000000070%d", i)
		e.authorize(t, ids[i])
	}
	// The first merchant's check is slow: while one replica is at it, the
	// other gets through the rest of the first run and reaches the second
	// run's targets, the first merchant's among them.
	watch := &watching{Alipay: e.svc, slow: map[string]time.Duration{ids[0]: 400 * time.Millisecond}, busy: map[string]int{}}
	var runs []*view.ReconcileRun
	for range 2 {
		run, err := e.reconciler(t, nil).Start(ctx, notify.ScopeAll, "", "")
		if err != nil || run.Targets != merchants {
			t.Fatalf("%+v %v", run, err)
		}
		runs = append(runs, run)
	}
	rctx, stop := context.WithCancel(ctx)
	var wg sync.WaitGroup
	for range 2 {
		r := e.reconciler(t, func(c *reconcile.Config) { c.Alipay = watch })
		wg.Add(1)
		go func() { defer wg.Done(); r.Run(rctx) }()
	}
	finished := func() bool {
		for _, run := range runs {
			if got, err := e.db.ReconcileRun(ctx, run.ID); err != nil || got.Status != notify.RunFinished {
				return false
			}
		}
		return true
	}
	testkit.Eventually(t, 20*time.Second, finished)
	stop()
	wg.Wait()

	watch.mu.Lock()
	overlaps := watch.overlaps
	watch.mu.Unlock()
	if len(overlaps) != 0 {
		t.Fatalf("merchants checked by two at once: %v", overlaps)
	}
	for _, run := range runs {
		got, _ := e.db.ReconcileRun(ctx, run.ID)
		if got.Done != merchants || got.Checked != merchants || got.Errors != 0 {
			t.Fatalf("%+v", got)
		}
	}
	asked := map[string]int{}
	for _, c := range e.sim.Calls(openapisim.MethodAuthTokenQuery) {
		asked[c.Biz["app_auth_token"].(string)]++
	}
	if len(asked) != merchants {
		t.Fatalf("%d merchants asked: %v", len(asked), asked)
	}
	for token, n := range asked {
		if n != 2 {
			t.Fatalf("token %s asked %d times; want once a run", token, n)
		}
	}
	if n := e.count(t, `SELECT count(*) FROM reconcile_leases`); n != 0 {
		t.Fatalf("%d merchant leases left", n)
	}
}

// watching is an Alipay that records token queries of one merchant under
// way at once (each takes 40ms, or slow's).
type watching struct {
	reconcile.Alipay
	slow     map[string]time.Duration
	mu       sync.Mutex
	busy     map[string]int
	overlaps []string
}

func (a *watching) QueryToken(ctx context.Context, appID, authAppID string) (*outbound.TokenInfo, error) {
	a.mu.Lock()
	if a.busy[authAppID]++; a.busy[authAppID] > 1 {
		a.overlaps = append(a.overlaps, authAppID)
	}
	d, ok := a.slow[authAppID]
	a.mu.Unlock()
	defer func() { a.mu.Lock(); a.busy[authAppID]--; a.mu.Unlock() }()
	if !ok {
		d = 40 * time.Millisecond
	}
	time.Sleep(d)
	return a.Alipay.QueryToken(ctx, appID, authAppID)
}
