package postgres_test

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/alipay-notify-gateway/gateway/internal/notify"
	"github.com/alipay-notify-gateway/gateway/internal/pgtest"
	"github.com/alipay-notify-gateway/gateway/internal/postgres"
	"github.com/alipay-notify-gateway/gateway/internal/testkit"
	"github.com/alipay-notify-gateway/gateway/internal/view"
)

// feed reads the whole feed after cursor, until it is caught up.
func feed(t *testing.T, db *postgres.DB, f view.EventFilter) ([]notify.StoredEvent, string) {
	t.Helper()
	var out []notify.StoredEvent
	for {
		page, err := db.Events(context.Background(), f)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, page.Items...)
		f.After = page.Next
		if !page.More {
			return out, page.Next
		}
	}
}

// eventsOf returns the types of the events of notification notifyID, in
// feed order, once they are visible.
func eventsOf(t *testing.T, db *postgres.DB, notifyID string) map[string]notify.StoredEvent {
	t.Helper()
	all, _ := feed(t, db, view.EventFilter{Limit: 500})
	out := map[string]notify.StoredEvent{}
	for _, e := range all {
		if e.NotifyID == notifyID {
			if _, dup := out[e.Type]; dup {
				t.Fatalf("two %s events for %s", e.Type, notifyID)
			}
			out[e.Type] = e
		}
	}
	return out
}

func TestIngest_Events(t *testing.T) {
	t.Parallel()
	db := pgtest.New(t)
	ctx := context.Background()
	t.Run("OK", func(t *testing.T) {
		n := testkit.Note(notify.MethodAuditPassed, `{"mini_app_id":"e1","mini_app_version":"1","audit_reason":"x"}`, 100)
		want(t, ingest(t, db, n), notify.StatusApplied, false)
		want(t, ingest(t, db, n), notify.StatusApplied, true) // a resend: no second event
		evs := eventsOf(t, db, n.NotifyID)
		if len(evs) != 2 {
			t.Fatalf("events %v", evs)
		}
		got := evs[notify.EventMiniAppAuditPassed]
		var m map[string]any
		if err := json.Unmarshal(got.Data, &m); err != nil || m["mini_app_id"] != "e1" || m["version"] != "1" || m["audit_status"] != "audit_passed" {
			t.Fatalf("%s %v", got.Data, err)
		}
		if got.OccurredAt == nil || got.OccurredAt.UnixMilli() != 100 || got.AppID != testkit.AppID || got.ID != notify.EventID(got.Seq) {
			t.Fatalf("%+v", got)
		}
		rec := evs[notify.EventNotificationReceived]
		if err := json.Unmarshal(rec.Data, &m); err != nil || m["status"] != "applied" || m["msg_method"] != notify.MethodAuditPassed {
			t.Fatalf("%s", rec.Data)
		}
		if _, ok := m["params"].(map[string]any)["sign"]; ok {
			t.Fatalf("the signature is in the event: %s", rec.Data)
		}
	})
	t.Run("StaleMakesNoStateEvent", func(t *testing.T) {
		newer := testkit.Note(notify.MethodAuditPassed, `{"mini_app_id":"e2","mini_app_version":"1"}`, 200)
		older := testkit.Note(notify.MethodAuditRejected, `{"mini_app_id":"e2","mini_app_version":"1"}`, 100)
		want(t, ingest(t, db, newer), notify.StatusApplied, false)
		want(t, ingest(t, db, older), notify.StatusStale, false)
		evs := eventsOf(t, db, older.NotifyID)
		if _, ok := evs[notify.EventMiniAppAuditRejected]; ok || len(evs) != 1 {
			t.Fatalf("%v", evs)
		}
		var m map[string]any
		_ = json.Unmarshal(evs[notify.EventNotificationReceived].Data, &m)
		if m["status"] != "stale" {
			t.Fatalf("%v", m)
		}
	})
	t.Run("UnknownMethod", func(t *testing.T) {
		n := testkit.Note("alipay.open.something.new", `{"k":"v"}`, 100)
		want(t, ingest(t, db, n), notify.StatusUnhandled, false)
		evs := eventsOf(t, db, n.NotifyID)
		var m map[string]any
		if err := json.Unmarshal(evs[notify.EventNotificationReceived].Data, &m); err != nil || len(evs) != 1 ||
			m["status"] != "unhandled" || m["biz_content"].(map[string]any)["k"] != "v" {
			t.Fatalf("%v %v", evs, m)
		}
	})
	t.Run("ForeignMakesNoStateEvent", func(t *testing.T) {
		mine := testkit.Note(notify.MethodMerchantConfirmed, `{"order_no":"e4","status":"PROCESS"}`, 100)
		want(t, ingest(t, db, mine), notify.StatusApplied, false)
		theirs := testkit.Note(notify.MethodMerchantConfirmed, `{"order_no":"e4","status":"FINISH"}`, 200)
		theirs.AppID = "2021000000000002"
		out := ingest(t, db, theirs)
		if !out.Foreign {
			t.Fatalf("%+v", out)
		}
		all, _ := feed(t, db, view.EventFilter{Limit: 500})
		for _, e := range all {
			if e.NotifyID == theirs.NotifyID && e.Type != notify.EventNotificationReceived {
				t.Fatalf("a foreign notification made %s", e.Type)
			}
		}
	})
	t.Run("Filter", func(t *testing.T) {
		all, _ := feed(t, db, view.EventFilter{Limit: 1, Types: []string{"mini_app.*"}})
		for _, e := range all {
			if e.Type != notify.EventMiniAppAuditPassed {
				t.Fatalf("%s", e.Type)
			}
		}
		if len(all) != 2 { // e1 and e2's newer
			t.Fatalf("%d", len(all))
		}
		none, _ := feed(t, db, view.EventFilter{AppID: "2021000000000099"})
		if len(none) != 0 {
			t.Fatalf("%v", none)
		}
	})
	t.Run("ErrBadCursor", func(t *testing.T) {
		if _, err := db.Events(ctx, view.EventFilter{After: "nope"}); notify.ErrorCode(err) != notify.EINVALID {
			t.Fatal(err)
		}
	})
}

// TestEvents_Feed checks that the feed never skips an event whose
// transaction commits after a later event's.
func TestEvents_Feed(t *testing.T) {
	t.Parallel()
	db := pgtest.New(t)
	ctx := context.Background()
	insert := `INSERT INTO events (app_id, notify_id, type, data) VALUES ($1, $2, 'notification.received', '{}')`
	t.Run("OutOfOrderCommit", func(t *testing.T) {
		_, start := feed(t, db, view.EventFilter{})
		first, err := db.Pool.Begin(ctx)
		if err != nil {
			t.Fatal(err)
		}
		defer first.Rollback(ctx)
		if _, err := first.Exec(ctx, insert, testkit.AppID, "slow"); err != nil {
			t.Fatal(err)
		}
		if _, err := db.Pool.Exec(ctx, insert, testkit.AppID, "fast"); err != nil { // a later id, committed first
			t.Fatal(err)
		}
		got, next := feed(t, db, view.EventFilter{After: start})
		if len(got) != 0 {
			t.Fatalf("the feed shows %s while an earlier transaction is in flight", got[0].NotifyID)
		}
		if err := first.Commit(ctx); err != nil {
			t.Fatal(err)
		}
		got, _ = feed(t, db, view.EventFilter{After: next})
		if len(got) != 2 || got[0].NotifyID != "slow" || got[1].NotifyID != "fast" {
			t.Fatalf("%+v", got)
		}
	})
	t.Run("ConcurrentWriters", func(t *testing.T) {
		_, start := feed(t, db, view.EventFilter{})
		const writers, each = 8, 60
		var wg sync.WaitGroup
		errs := make(chan error, writers)
		for w := range writers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				r := rand.New(rand.NewPCG(uint64(w), 1))
				for i := range each {
					tx, err := db.Pool.Begin(ctx)
					if err == nil {
						_, err = tx.Exec(ctx, insert, testkit.AppID, fmt.Sprintf("w%d-%d", w, i))
					}
					if err == nil {
						time.Sleep(time.Duration(r.IntN(3000)) * time.Microsecond) // commit in another order than ids
						err = tx.Commit(ctx)
					}
					if err != nil {
						errs <- err
						return
					}
				}
			}()
		}
		done := make(chan struct{})
		go func() { wg.Wait(); close(done) }()
		seen := map[string]bool{}
		cursor := start
		var lastSeq int64
		// Other tests' transactions on the server hold the horizon back
		// for a moment: a reader caught up after the writers are done
		// waits a little before calling an event skipped.
		var deadline time.Time
		for finished := false; ; {
			select {
			case <-done:
				if !finished {
					finished, deadline = true, time.Now().Add(10*time.Second)
				}
			default:
			}
			page, err := db.Events(ctx, view.EventFilter{After: cursor, Limit: 7})
			if err != nil {
				t.Fatal(err)
			}
			for _, e := range page.Items {
				if seen[e.NotifyID] {
					t.Fatalf("%s twice", e.NotifyID)
				}
				seen[e.NotifyID] = true
				lastSeq = e.Seq
			}
			cursor = page.Next
			if finished && !page.More && len(seen) == writers*each {
				break
			}
			if finished && !page.More && len(page.Items) == 0 && time.Now().After(deadline) {
				t.Fatalf("caught up with %d of %d events: the feed skipped some (last %d)", len(seen), writers*each, lastSeq)
			}
		}
		select {
		case err := <-errs:
			t.Fatal(err)
		default:
		}
	})
}

// TestTypeFilter_MatchesDomain: the SQL filter of the feed and the fan-out
// takes what notify.Matches takes.
func TestTypeFilter_MatchesDomain(t *testing.T) {
	t.Parallel()
	db := pgtest.New(t)
	filters := [][]string{nil, {}, {"*"}, {"mini_app.*"}, {"authorization.granted"}, {"authorization.*", "mini_app.audit_rejected"},
		{"mini_app_order.*"}, {"notification.received"}}
	for _, f := range filters {
		for _, typ := range notify.EventTypes() {
			var got bool
			err := db.Pool.QueryRow(context.Background(), `SELECT `+postgres.TypeFilterSQL+` FROM (SELECT $2::text AS type) e`, f, typ).Scan(&got)
			if err != nil {
				t.Fatal(err)
			}
			if want := notify.Matches(f, typ); got != want {
				t.Errorf("filter %q, type %s: SQL %v, notify.Matches %v", f, typ, got, want)
			}
		}
	}
}
