package reconcile_test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/alipay-notify-gateway/gateway/internal/reconcile"
	"github.com/alipay-notify-gateway/gateway/internal/view"
)

// TestReconciler_OutageWithinGap: an outage that ends while the last
// outage run is under OutageGap old is kept, and its run starts once the
// gap allows; unless an outage run started since it ended (another
// replica's, for the same outage), which covers it.
func TestReconciler_OutageWithinGap(t *testing.T) {
	t.Parallel()
	e := newEnv(t, 2*time.Second)
	ctx := context.Background()
	e.authorize(t, merchantA)
	var (
		mu     sync.Mutex
		now    = time.Now()
		health error
	)
	r := e.reconciler(t, func(c *reconcile.Config) {
		c.AfterOutage = 5 * time.Minute // OutageGap: the default 30 minutes
		c.Now = func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
		c.Health = []func(context.Context) error{func(context.Context) error { mu.Lock(); defer mu.Unlock(); return health }}
	})
	outageRuns := func() int { return e.count(t, `SELECT count(*) FROM reconcile_runs WHERE trigger = 'outage'`) }
	// lastOutageRun sets when the last outage run started, ago.
	lastOutageRun := func(ago string) {
		if _, err := e.db.Pool.Exec(ctx, `UPDATE reconcile_state SET at = now() - $1::interval WHERE name = 'outage'`, ago); err != nil {
			t.Fatal(err)
		}
	}
	watch := func(d time.Duration, err error) {
		t.Helper()
		mu.Lock()
		now, health = now.Add(d), err
		mu.Unlock()
		if err := r.Watch(ctx, false); err != nil {
			t.Fatal(err)
		}
	}
	// outage has the replica not ready for ten minutes, then ready.
	outage := func() {
		t.Helper()
		watch(time.Second, errors.New("websocket of app 2013121700999429: not connected"))
		watch(10*time.Minute, nil)
	}
	watch(0, nil)

	t.Run("OKKeptUntilTheGapAllows", func(t *testing.T) {
		lastOutageRun("20 minutes") // an earlier outage's run
		n := outageRuns()
		outage()
		watch(time.Minute, nil)
		if outageRuns() != n {
			t.Fatalf("%d outage runs; want %d: the gap holds it back", outageRuns(), n)
		}
		lastOutageRun("31 minutes") // the gap has passed
		watch(10*time.Second, nil)
		if outageRuns() != n+1 {
			t.Fatalf("%d outage runs; want %d", outageRuns(), n+1)
		}
		runs, _, _ := e.db.ReconcileRuns(ctx, view.RunFilter{Limit: 1})
		if !strings.Contains(runs[0].Reason, "not connected") {
			t.Fatalf("%+v", runs[0])
		}
		lastOutageRun("31 minutes")
		watch(10*time.Second, nil)
		if outageRuns() != n+1 {
			t.Fatalf("%d outage runs; want %d: one per outage", outageRuns(), n+1)
		}
	})
	t.Run("OKCoveredByARunStartedSince", func(t *testing.T) {
		lastOutageRun("20 minutes")
		n := outageRuns()
		outage()
		lastOutageRun("0 seconds") // another replica saw it end first
		watch(10*time.Second, nil)
		lastOutageRun("31 minutes")
		watch(10*time.Second, nil)
		if outageRuns() != n {
			t.Fatalf("%d outage runs; want %d: another replica's run covered the outage", outageRuns(), n)
		}
	})
}
