package console

import (
	"context"
	"net/http"
	"sort"
	"time"

	"github.com/go-chi/chi/v5"

	"github.com/alipay-notify-gateway/gateway/internal/metrics"
	"github.com/alipay-notify-gateway/gateway/internal/view"
)

func (c *Console) overviewRoutes(r chi.Router) {
	r.Get("/", c.overview)
}

// window is one period of the overview: what the database stored, what
// this replica refused.
type window struct {
	Name    string // a message key
	Stored  view.IntakeBucket
	Recent  metrics.RecentCounts
	Refused []count // by reason, most first
	Chart   chart
}

type count struct {
	Key string
	N   int
}

// channelState is one WebSocket channel's.
type channelState struct {
	AppID      string
	Connected  bool
	Reconnects int64
	Problem    string
}

// endpointState is one webhook endpoint's forwarding.
type endpointState struct {
	ID             int64
	URL            string
	Enabled        bool
	OldestPending  time.Duration // 0: none pending
	Dead           int
	DisabledReason string
}

type overviewData struct {
	Windows   []window
	Ready     []string // why the gateway is not ready; empty when it is
	Channels  []channelState
	Forwarded bool // the webhook part is shown
	Endpoints []endpointState
	FeedLag   time.Duration
	Dead      int
	Since     time.Time // this replica's counting start
	// Reconcile is the last day's repairs and errors (nil when
	// reconciliation is not on), LastRun the newest run (none yet: empty).
	Reconcile *view.ReconcileSummary
	LastRun   []*view.ReconcileRun
}

func (c *Console) overview(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	now := c.now()
	d := overviewData{}
	day, err := c.cfg.Store.IntakeCounts(ctx, now, 24*time.Hour, time.Hour)
	if err != nil {
		c.fail(w, r, err)
		return
	}
	hour, err := c.cfg.Store.IntakeCounts(ctx, now, time.Hour, 5*time.Minute)
	if err != nil {
		c.fail(w, r, err)
		return
	}
	l := langOf(ctx)
	loc := c.cfg.Location
	tip := func(b view.IntakeBucket) string {
		return l.T("overview.bar", b.Start.In(loc).Format("01-02 15:04"), b.Total(), b.Applied, b.Stale, b.Unhandled, b.Failed)
	}
	for _, p := range []struct {
		name    string
		span    time.Duration
		buckets []view.IntakeBucket
		tick    func(view.IntakeBucket) string
		every   int
	}{
		{"overview.hour", time.Hour, hour, func(b view.IntakeBucket) string { return b.Start.In(loc).Format("15:04") }, 3},
		{"overview.day", 24 * time.Hour, day, func(b view.IntakeBucket) string { return b.Start.In(loc).Format("15h") }, 6},
	} {
		win := window{Name: p.name, Recent: c.cfg.Metrics.Recent(p.span)}
		for _, b := range p.buckets {
			win.Stored.Applied += b.Applied
			win.Stored.Stale += b.Stale
			win.Stored.Unhandled += b.Unhandled
			win.Stored.Failed += b.Failed
		}
		for _, k := range sortedKeys(win.Recent.Refused) {
			win.Refused = append(win.Refused, count{k, win.Recent.Refused[k]})
		}
		sort.SliceStable(win.Refused, func(i, j int) bool { return win.Refused[i].N > win.Refused[j].N })
		win.Chart = intakeChart(p.buckets, 480, l.T("overview.chart", l.T(p.name)), p.every, p.tick, tip)
		d.Windows = append(d.Windows, win)
		d.Since = win.Recent.Since
	}
	d.Ready = c.readiness(ctx)
	for _, ch := range c.cfg.Channels {
		s := channelState{AppID: ch.AppID(), Connected: ch.Connected(), Reconnects: ch.Reconnects()}
		if err := ch.Ready(); err != nil {
			s.Problem = err.Error()
		}
		d.Channels = append(d.Channels, s)
	}
	if c.cfg.Webhooks != nil {
		d.Forwarded = true
		eps, err := c.cfg.Webhooks.Endpoints(ctx, false)
		if err != nil {
			c.fail(w, r, err)
			return
		}
		st, err := c.cfg.Store.WebhookStats(ctx)
		if err != nil {
			c.fail(w, r, err)
			return
		}
		d.FeedLag = st.FeedLag
		for _, ep := range eps {
			d.Endpoints = append(d.Endpoints, endpointState{ID: ep.ID, URL: safeURL(ep.URL), Enabled: ep.Enabled,
				OldestPending: st.OldestPending[ep.ID], Dead: st.Dead[ep.ID], DisabledReason: ep.DisabledReason})
			d.Dead += st.Dead[ep.ID]
		}
	}
	if c.cfg.Reconcile != nil {
		if d.Reconcile, err = c.cfg.Store.ReconcileSummary(ctx, now.Add(-reconcileWindow)); err != nil {
			c.fail(w, r, err)
			return
		}
		if d.LastRun, _, err = c.cfg.Reconcile.Runs(ctx, view.RunFilter{Limit: 1}); err != nil {
			c.fail(w, r, err)
			return
		}
	}
	c.render(w, r, "overview", "nav.overview", d)
}

// readiness runs the readiness checks, and says why each that fails
// does.
func (c *Console) readiness(ctx context.Context) []string {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	var out []string
	for _, check := range c.cfg.ReadyChecks {
		if err := check(ctx); err != nil {
			out = append(out, err.Error())
		}
	}
	return out
}
