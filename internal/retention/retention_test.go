package retention_test

import (
	"context"
	"crypto/sha256"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/alipay-notify-gateway/gateway/internal/notify"
	"github.com/alipay-notify-gateway/gateway/internal/pgtest"
	"github.com/alipay-notify-gateway/gateway/internal/postgres"
	"github.com/alipay-notify-gateway/gateway/internal/retention"
	"github.com/alipay-notify-gateway/gateway/internal/testkit"
)

const day = 24 * time.Hour

// policy keeps applied and stale notifications 90 days, failed and
// unhandled ones 365, events 30, template messages 90, digests 30.
var policy = notify.Retention{Notifications: 90 * day, Failed: 365 * day, Events: 30 * day, TemplateMessages: 90 * day, Digests: 30 * day}

// note returns a notification of method about mini-app miniApp (version
// 1), with a digest of its signed content as the verifier gives one.
func note(method, miniApp string, ts int64) *notify.Notification {
	n := testkit.Note(method, `{"mini_app_id":"`+miniApp+`","mini_app_version":"1"}`, ts)
	d := sha256.Sum256([]byte(n.NotifyID))
	n.ContentDigest = d[:]
	return n
}

// fixture is a database holding one record of each kind on either side of
// its retention.
type fixture struct {
	db *postgres.DB
	// the notify_ids of the notifications, by what is expected of them
	pruned, kept []string
	applied      *notify.Notification // old and applied: pruned
}

func exec(t *testing.T, db *postgres.DB, sql string, args ...any) {
	t.Helper()
	if _, err := db.Pool.Exec(context.Background(), sql, args...); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
}

func count(t *testing.T, db *postgres.DB, sql string, args ...any) int {
	t.Helper()
	var n int
	if err := db.Pool.QueryRow(context.Background(), sql, args...).Scan(&n); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
	return n
}

// age sets when notification id arrived, and when its events were written.
func age(t *testing.T, db *postgres.DB, id string, d time.Duration) {
	t.Helper()
	at := time.Now().Add(-d)
	exec(t, db, `UPDATE notifications SET received_at = $2 WHERE notify_id = $1`, id, at)
	exec(t, db, `UPDATE events SET created_at = $2 WHERE notify_id = $1`, id, at)
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	db := pgtest.New(t)
	ctx := context.Background()
	f := &fixture{db: db}
	ingest := func(n *notify.Notification, status notify.Status, old time.Duration, pruned bool) *notify.Notification {
		t.Helper()
		out, err := db.Ingest(ctx, testkit.Decide(t, n))
		if err != nil {
			t.Fatal(err)
		}
		if out.Status != status {
			t.Fatalf("%s: %+v, want %s", n.NotifyID, out, status)
		}
		age(t, db, n.NotifyID, old)
		if pruned {
			f.pruned = append(f.pruned, n.NotifyID)
		} else {
			f.kept = append(f.kept, n.NotifyID)
		}
		return n
	}
	f.applied = ingest(note(notify.MethodAuditPassed, "m1", 200), notify.StatusApplied, 100*day, true)
	ingest(note(notify.MethodAuditPassed, "m1", 100), notify.StatusStale, 100*day, true)
	ingest(note(notify.MethodAuditPassed, "m2", 100), notify.StatusApplied, 10*day, false)
	ingest(note("alipay.open.future.thing", "u1", 1), notify.StatusUnhandled, 100*day, false)
	ingest(note("alipay.open.future.thing", "u2", 1), notify.StatusUnhandled, 400*day, true)
	failed := ingest(note("alipay.open.future.thing", "f1", 1), notify.StatusUnhandled, 400*day, true)
	exec(t, db, `UPDATE notifications SET status = 'failed', error = 'x' WHERE notify_id = $1`, failed.NotifyID)

	// Deliveries of the old events (100 days) to endpoint 1: delivered and
	// dead ones go, with their attempts; a pending one (a retry) stays, and
	// keeps its event and every later one.
	var first, last int64
	if err := db.Pool.QueryRow(ctx, `SELECT min(id), max(id) FROM events`).Scan(&first, &last); err != nil {
		t.Fatal(err)
	}
	old := time.Now().Add(-100 * day)
	for _, d := range []struct {
		endpoint, event int64
		status          string
		at              time.Time
	}{{1, first, "delivered", old}, {1, first + 1, "dead", old}, {1, last, "pending", old}, {2, last, "delivered", time.Now()}} {
		var id int64
		if err := db.Pool.QueryRow(ctx, `INSERT INTO webhook_deliveries (endpoint_id, event_id, status, expires_at, created_at, updated_at)
			VALUES ($1, $2, $3, $4, $4, $4) RETURNING id`, d.endpoint, d.event, d.status, d.at).Scan(&id); err != nil {
			t.Fatal(err)
		}
		exec(t, db, `INSERT INTO webhook_attempts (delivery_id, attempt, started_at, duration_ms) VALUES ($1, 1, $2, 5)`, id, d.at)
	}
	for _, m := range []struct {
		status string
		at     time.Time
	}{{"sent", old}, {"failed", old}, {"pending", old}, {"sent", time.Now()}} {
		exec(t, db, `INSERT INTO template_messages (app_id, request, request_hash, status, created_at) VALUES ($1, '{}', 'h', $2, $3)`, testkit.AppID, m.status, m.at)
	}
	// Template message batches: one that ended 100 days ago goes with its
	// two recipients; one running since then, and one that ended a day
	// ago, stay with theirs.
	for _, b := range []struct {
		status   string
		finished *time.Time
	}{{"finished", &old}, {"running", nil}, {"cancelled", ptr(time.Now().Add(-day))}} {
		var id int64
		if err := db.Pool.QueryRow(ctx, `INSERT INTO template_message_batches (app_id, request_hash, user_template_id, page, status, total, created_at, finished_at)
			VALUES ($1, 'h', 't', 'p', $2, 2, $3, $4) RETURNING id`, testkit.AppID, b.status, old, b.finished).Scan(&id); err != nil {
			t.Fatal(err)
		}
		exec(t, db, `INSERT INTO template_message_recipients (batch_id, seq, to_user_id, status) VALUES ($1, 1, '2088000000000001', 'sent'), ($1, 2, '2088000000000002', 'failed')`, id)
	}
	// Reconciliation runs: an old one with an error (both go), an old one
	// that repaired something (it stays, with its drift), a recent one, a
	// running one.
	for _, r := range []struct {
		repaired int
		finished any
		status   string
	}{{0, old, "finished"}, {1, old, "finished"}, {0, time.Now(), "finished"}, {0, nil, "running"}} {
		var id int64
		if err := db.Pool.QueryRow(ctx, `INSERT INTO reconcile_runs (trigger, scope, status, repaired, started_at, finished_at)
			VALUES ('schedule', 'all', $1, $2, $3, $4) RETURNING id`, r.status, r.repaired, old, r.finished).Scan(&id); err != nil {
			t.Fatal(err)
		}
		exec(t, db, `INSERT INTO reconcile_errors (run_id, app_id, kind, at) VALUES ($1, $2, 'invalid_token', $3)`, id, testkit.AppID, old)
	}
	exec(t, db, `INSERT INTO notifications_pruned (content_digest, pruned_at) VALUES ('\x01', now() - interval '40 days'), ('\x02', now() - interval '1 day')`)
	return f
}

func pruner(db *postgres.DB, r notify.Retention) *retention.Pruner {
	return retention.New(retention.Config{Store: db, Retention: r, Batch: 2, Logger: zerolog.Nop()})
}

func TestPruner_Run(t *testing.T) {
	t.Parallel()
	ctx := context.Background()

	t.Run("OK", func(t *testing.T) {
		t.Parallel()
		f := newFixture(t)
		db := f.db
		events := count(t, db, `SELECT count(*) FROM events`)
		pendingEvent := count(t, db, `SELECT max(id) FROM events`)
		history := count(t, db, `SELECT count(*) FROM mini_app_audit_events`)
		res, err := pruner(db, policy).Run(ctx)
		if err != nil || !res.Ran {
			t.Fatalf("%+v, %v", res, err)
		}
		for _, id := range f.pruned {
			if _, err := db.Notification(ctx, testkit.AppID, id); notify.ErrorCode(err) != notify.ENOTFOUND {
				t.Errorf("notification %s: %v, want it pruned", id, err)
			}
		}
		for _, id := range f.kept {
			if _, err := db.Notification(ctx, testkit.AppID, id); err != nil {
				t.Errorf("notification %s: %v, want it kept", id, err)
			}
		}
		want := map[notify.Prunable]int64{
			notify.PruneNotifications: 2, notify.PruneFailed: 2,
			// 2 finished deliveries of old events, then the old events below
			// the pending delivery's (the last), all but the m2 and u1 ones
			// (10 and 100 days: u1's event is older than 30 days, so it goes).
			notify.PruneTemplateMessages: 2, notify.PruneDigests: 1,
			notify.PruneTemplateBatches: 3, // a batch and its two recipients
			// the two old runs' errors, and the one of them that repaired nothing
			notify.PruneReconcileRuns: 3,
		}
		for what, n := range want {
			if res.Deleted[what] != n {
				t.Errorf("deleted %d %s, want %d (%+v)", res.Deleted[what], what, n, res.Deleted)
			}
		}
		// The state and its history are never pruned.
		if m, err := db.MiniApp(ctx, "m1"); err != nil || m.AuditStatus != notify.AuditPassed {
			t.Fatalf("mini-app m1: %+v, %v", m, err)
		}
		if n := count(t, db, `SELECT count(*) FROM mini_app_audit_events`); n != history {
			t.Fatalf("%d audit history rows after the prune, %d before", n, history)
		}
		// Events: the ones older than 30 days below the pending delivery's
		// event go; that event and the newer (m2's, 10 days) stay.
		left := count(t, db, `SELECT count(*) FROM events`)
		if count(t, db, `SELECT count(*) FROM events WHERE id = $1`, pendingEvent) != 1 {
			t.Error("the event of a pending delivery was pruned")
		}
		if count(t, db, `SELECT count(*) FROM events WHERE created_at < now() - interval '30 days' AND id < $1`, pendingEvent) != 0 {
			t.Error("old events were left")
		}
		if int64(events-left) != res.Deleted[notify.PruneEvents]-2 {
			t.Errorf("%d events of %d left; deleted %d (with 2 deliveries)", left, events, res.Deleted[notify.PruneEvents])
		}
		if n := count(t, db, `SELECT count(*) FROM webhook_deliveries`); n != 2 {
			t.Errorf("%d deliveries left, want the pending and the recent one", n)
		}
		if n := count(t, db, `SELECT count(*) FROM webhook_attempts`); n != 2 {
			t.Errorf("%d attempts left, want those of the two deliveries left", n)
		}
		if n := count(t, db, `SELECT count(*) FROM template_message_batches WHERE status <> 'finished'`) +
			count(t, db, `SELECT count(*) FROM template_message_recipients`); n != 6 {
			t.Errorf("%d rows of the running and the recent batches left, want 6: the two batches and their four recipients", n)
		}
		if n := count(t, db, `SELECT count(*) FROM template_messages WHERE status = 'pending' OR created_at > now() - interval '1 day'`); n != 2 {
			t.Errorf("%d of the pending and the recent template message left", n)
		}
		// The pruned notifications' digests are kept, and the old digest is gone.
		if n := count(t, db, `SELECT count(*) FROM notifications_pruned WHERE content_digest = $1`, f.applied.ContentDigest); n != 1 {
			t.Error("the pruned notification's digest is not kept")
		}
		if n := count(t, db, `SELECT count(*) FROM notifications_pruned WHERE content_digest = '\x01'`); n != 0 {
			t.Error("a digest past RETENTION_DIGESTS is kept")
		}
		// Again: nothing left to prune.
		res, err = pruner(db, policy).Run(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for what, n := range res.Deleted {
			if n != 0 {
				t.Errorf("a second prune deleted %d %s", n, what)
			}
		}
	})

	t.Run("ResendOfPruned", func(t *testing.T) {
		// A resend (or a replay) of a pruned notification is acknowledged
		// as a duplicate and changes nothing: no row, no history, no event.
		t.Parallel()
		f := newFixture(t)
		db := f.db
		if _, err := pruner(db, policy).Run(ctx); err != nil {
			t.Fatal(err)
		}
		events := count(t, db, `SELECT count(*) FROM events`)
		history := count(t, db, `SELECT count(*) FROM mini_app_audit_events`)
		out, err := db.Ingest(ctx, testkit.Decide(t, f.applied))
		if err != nil {
			t.Fatal(err)
		}
		if !out.Duplicate || !out.Pruned || out.Label() != "pruned" {
			t.Fatalf("%+v", out)
		}
		replay := *f.applied
		replay.NotifyID += "-replayed"
		if out, err := db.Ingest(ctx, testkit.Decide(t, &replay)); err != nil || !out.Pruned {
			t.Fatalf("replay under another notify_id: %+v, %v", out, err)
		}
		if _, err := db.Notification(ctx, testkit.AppID, f.applied.NotifyID); notify.ErrorCode(err) != notify.ENOTFOUND {
			t.Fatalf("the resend was stored: %v", err)
		}
		if n := count(t, db, `SELECT count(*) FROM mini_app_audit_events`); n != history {
			t.Fatalf("%d audit history rows after the resend, %d before", n, history)
		}
		if n := count(t, db, `SELECT count(*) FROM events`); n != events {
			t.Fatalf("%d events after the resend, %d before", n, events)
		}
		// In a batch with new ones, too.
		fresh := note(notify.MethodAuditPassed, "m3", 300)
		res := db.IngestBatch(ctx, []notify.Decided{testkit.Decide(t, f.applied), testkit.Decide(t, fresh)})
		if res[0].Err != nil || !res[0].Outcome.Pruned || res[1].Err != nil || res[1].Outcome.Status != notify.StatusApplied {
			t.Fatalf("%+v", res)
		}
	})

	t.Run("ForeverKeepsAll", func(t *testing.T) {
		t.Parallel()
		f := newFixture(t)
		res, err := pruner(f.db, notify.Retention{}).Run(ctx)
		if err != nil || res.Ran || len(res.Deleted) != 0 {
			t.Fatalf("%+v, %v", res, err)
		}
	})

	t.Run("OneAtATime", func(t *testing.T) {
		// While one replica prunes, another deletes nothing.
		t.Parallel()
		f := newFixture(t)
		held, err := f.db.StartPruning(ctx)
		if err != nil || held == nil {
			t.Fatalf("%v, %v", held, err)
		}
		res, err := pruner(f.db, policy).Run(ctx)
		if err != nil || res.Ran {
			t.Fatalf("%+v, %v while another prunes", res, err)
		}
		held.Done()
		if res, err := pruner(f.db, policy).Run(ctx); err != nil || !res.Ran || res.Deleted[notify.PruneNotifications] != 2 {
			t.Fatalf("%+v, %v once the other is done", res, err)
		}
	})
}

func TestDB_Prunable(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	f := newFixture(t)
	db := f.db
	tables := `SELECT (SELECT count(*) FROM notifications) + (SELECT count(*) FROM events) + (SELECT count(*) FROM webhook_deliveries)
		+ (SELECT count(*) FROM webhook_attempts) + (SELECT count(*) FROM template_messages) + (SELECT count(*) FROM notifications_pruned)
		+ (SELECT count(*) FROM template_message_batches) + (SELECT count(*) FROM template_message_recipients)`
	before := count(t, db, tables)
	counted := map[notify.Prunable]int64{}
	for _, c := range policy.Cutoffs(time.Now()) {
		n, err := db.Prunable(ctx, c)
		if err != nil {
			t.Fatal(err)
		}
		counted[c.What] = n
	}
	if after := count(t, db, tables); after != before {
		t.Fatalf("counting changed the rows: %d, then %d", before, after)
	}
	res, err := pruner(db, policy).Run(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for what, n := range counted {
		// The digests' count is of those before the prune adds its own.
		if res.Deleted[what] != n {
			t.Errorf("%s: counted %d, deleted %d", what, n, res.Deleted[what])
		}
	}
}

// fakeStore prunes `full` full batches of every cutoff, then nothing.
type fakeStore struct {
	full  int
	calls []time.Time
}

func (f *fakeStore) StartPruning(context.Context) (notify.Pruning, error) { return f, nil }
func (f *fakeStore) TableSizes(context.Context) (map[string]int64, error) { return nil, nil }
func (f *fakeStore) Done()                                                {}
func (f *fakeStore) Prune(_ context.Context, _ notify.Cutoff, limit int) (int64, error) {
	f.calls = append(f.calls, time.Now())
	if len(f.calls) <= f.full {
		return int64(limit), nil
	}
	return 0, nil
}

func TestPruner_Yield(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	r := notify.Retention{Notifications: 90 * day, Events: 30 * day}
	t.Run("OK", func(t *testing.T) {
		t.Parallel()
		f := &fakeStore{full: 5}
		start := time.Now()
		if _, err := retention.New(retention.Config{Store: f, Retention: r, Logger: zerolog.Nop()}).Run(ctx); err != nil {
			t.Fatal(err)
		}
		if len(f.calls) != 8 || time.Since(start) > time.Second {
			t.Fatalf("%d batches in %s", len(f.calls), time.Since(start))
		}
	})
	t.Run("BusyIntake", func(t *testing.T) {
		// While intake is busy, one batch every BusyEvery: slower, never stopped.
		t.Parallel()
		f := &fakeStore{full: 3}
		p := retention.New(retention.Config{Store: f, Retention: r, Logger: zerolog.Nop(),
			Busy: func() bool { return true }, BusyEvery: 100 * time.Millisecond})
		if _, err := p.Run(ctx); err != nil {
			t.Fatal(err)
		}
		if len(f.calls) != 6 {
			t.Fatalf("%d batches", len(f.calls))
		}
		for i := 1; i < len(f.calls); i++ {
			if gap := f.calls[i].Sub(f.calls[i-1]); gap < 90*time.Millisecond {
				t.Fatalf("batch %d %s after the one before while intake is busy", i, gap)
			}
		}
	})
}

func ptr[T any](v T) *T { return &v }
