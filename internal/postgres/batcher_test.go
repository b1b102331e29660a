package postgres_test

import (
	"context"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/alipay-notify-gateway/gateway/internal/notify"
	"github.com/alipay-notify-gateway/gateway/internal/pgtest"
	"github.com/alipay-notify-gateway/gateway/internal/postgres"
	"github.com/alipay-notify-gateway/gateway/internal/testkit"
)

func TestIngestBatch(t *testing.T) {
	t.Parallel()
	db := pgtest.New(t)
	ctx := context.Background()
	t.Run("CopiesInOneBatch", func(t *testing.T) {
		n := testkit.Note(notify.MethodAuditPassed, `{"mini_app_id":"c1","mini_app_version":"1"}`, 1)
		res := db.IngestBatch(ctx, decide(t, n, n, n))
		for i, r := range res {
			if r.Err != nil || r.Outcome.Status != notify.StatusApplied || r.Outcome.DeliveryCount != 3 || r.Outcome.Duplicate != (i > 0) {
				t.Fatalf("%d: %+v", i, r)
			}
		}
		h, _ := db.AuditHistory(ctx, "c1")
		if len(h) != 1 {
			t.Fatalf("history %d", len(h))
		}
	})
	t.Run("SameKeyOrderedInOneBatch", func(t *testing.T) {
		newer := testkit.Note(notify.MethodAuditPassed, `{"mini_app_id":"c2","mini_app_version":"1"}`, 20)
		older := testkit.Note(notify.MethodAuditRejected, `{"mini_app_id":"c2","mini_app_version":"1"}`, 10)
		res := db.IngestBatch(ctx, decide(t, newer, older))
		if res[0].Outcome.Status != notify.StatusApplied || res[1].Outcome.Status != notify.StatusStale {
			t.Fatalf("%+v", res)
		}
	})
	t.Run("BadRowFailsAlone", func(t *testing.T) {
		good1 := testkit.Note(notify.MethodMerchantConfirmed, `{"order_no":"b1","status":"PROCESS"}`, 1)
		// A NUL character is valid JSON but not valid Postgres text.
		bad := testkit.Note(notify.MethodAuditRejected, `{"mini_app_id":"b2","mini_app_version":"1","audit_reason":"x\u0000y"}`, 1)
		good2 := testkit.Note(notify.MethodMerchantConfirmed, `{"order_no":"b3","status":"PROCESS"}`, 1)
		res := db.IngestBatch(ctx, decide(t, good1, bad, good2))
		if res[0].Outcome.Status != notify.StatusApplied || res[2].Outcome.Status != notify.StatusApplied {
			t.Fatalf("%+v", res)
		}
		if res[1].Err != nil || res[1].Outcome.Status != notify.StatusFailed || !strings.Contains(res[1].Outcome.Error, "store:") {
			t.Fatalf("%+v", res[1])
		}
		if n, err := db.Notification(ctx, testkit.AppID, bad.NotifyID); err != nil || n.Status != notify.StatusFailed {
			t.Fatalf("bad row not kept: %+v %v", n, err)
		}
	})
}

func TestBatcher_Ingest(t *testing.T) {
	t.Parallel()
	db := pgtest.New(t)
	var batches, biggest atomic.Int64
	b := postgres.NewBatcher(db, postgres.BatcherConfig{OnBatch: func(n int) {
		batches.Add(1)
		for {
			old := biggest.Load()
			if int64(n) <= old || biggest.CompareAndSwap(old, int64(n)) {
				return
			}
		}
	}})
	t.Run("OK", func(t *testing.T) {
		const n = 300
		errs := make(chan error, 2*n)
		testkit.Concurrently(n, func(i int) {
			x := testkit.Note(notify.MethodMerchantConfirmed, fmt.Sprintf(`{"order_no":"g%d","status":"PROCESS"}`, i), 1)
			for range 2 { // and a resend, possibly in the same batch
				out, err := b.Ingest(context.Background(), decide(t, x)[0])
				if err != nil || out.Status != notify.StatusApplied {
					errs <- fmt.Errorf("%+v %v", out, err)
				}
			}
		})
		close(errs)
		for err := range errs {
			t.Fatal(err)
		}
		var rows, events, deliveries int
		_ = db.Pool.QueryRow(context.Background(), `SELECT count(*), sum(delivery_count), (SELECT count(*) FROM mini_app_order_events) FROM notifications`).Scan(&rows, &deliveries, &events)
		if rows != n || events != n || deliveries != 2*n {
			t.Fatalf("rows %d events %d deliveries %d", rows, events, deliveries)
		}
		if biggest.Load() < 2 {
			t.Logf("no batch larger than 1 (%d batches): the machine was too slow to overlap", batches.Load())
		}
	})
	t.Run("ErrClosed", func(t *testing.T) {
		b.Close()
		_, err := b.Ingest(context.Background(), decide(t, testkit.Note(notify.MethodAuditPassed, `{}`, 1))[0])
		if notify.ErrorCode(err) != notify.EUNAVAILABLE {
			t.Fatalf("err = %v", err)
		}
	})
}

func TestBatcher_DatabaseDown(t *testing.T) {
	t.Parallel()
	db, err := postgres.Open(context.Background(), postgres.Config{URL: "postgres://nobody@127.0.0.1:1/none?connect_timeout=1"})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	b := postgres.NewBatcher(db, postgres.BatcherConfig{})
	defer b.Close()
	_, err = b.Ingest(context.Background(), decide(t, testkit.Note(notify.MethodAuditPassed, `{}`, 1))[0])
	if notify.ErrorCode(err) != notify.EUNAVAILABLE {
		t.Fatalf("err = %v", err)
	}
}

// TestIngestBatch_Rounds puts several changes to the same rows in one batch
// (they are applied in rounds, newest first) and checks the outcome against
// the same notifications ingested one at a time in another order.
func TestIngestBatch_Rounds(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	grant := func(ts int64) *notify.Notification {
		n := testkit.Note(notify.MethodAuthGranted, fmt.Sprintf(`{"detail":{"app_id":"%s","auth_app_id":"mr","auth_time":%d,"app_auth_token":"t","app_refresh_token":"r","expires_in":3600}}`, testkit.AppID, ts), ts)
		n.Params["status"] = "execute_auth"
		return n
	}
	cancel := func(ts int64) *notify.Notification {
		return testkit.Note(notify.MethodAuthCancelled, `{"auth_app_id":"mr"}`, ts)
	}
	order := func(ts int64, status string) *notify.Notification {
		return testkit.Note(notify.MethodMerchantConfirmed, `{"order_no":"or","status":"`+status+`"}`, ts)
	}
	audit := func(ts int64, method, version string) *notify.Notification {
		return testkit.Note(method, `{"mini_app_id":"ar","mini_app_version":"`+version+`"}`, ts)
	}
	batch := []*notify.Notification{
		grant(100), order(10, "PROCESS"), audit(10, notify.MethodAuditRejected, "1"), cancel(200),
		order(30, "SUCCESS"), audit(20, notify.MethodAuditPassed, "2"), grant(150), order(20, "FAIL"),
		audit(30, notify.MethodAuditPassed, "1"),
	}
	wantStatus := []notify.Status{
		notify.StatusStale, notify.StatusStale, notify.StatusStale, notify.StatusApplied,
		notify.StatusApplied, notify.StatusApplied, notify.StatusStale, notify.StatusStale,
		notify.StatusApplied,
	}

	// state is what a database ends with, in one string.
	state := func(db *postgres.DB) string {
		a, err := db.Authorization(ctx, testkit.AppID, "mr")
		if err != nil {
			t.Fatal(err)
		}
		o, err := db.Order(ctx, "or")
		if err != nil {
			t.Fatal(err)
		}
		m, err := db.MiniApp(ctx, "ar")
		if err != nil {
			t.Fatal(err)
		}
		s := fmt.Sprintf("auth %s token %v; order %s; app %s %s;", a.Status, a.HasToken, o.Status, m.AuditStatus, m.MiniAppVersion)
		for _, v := range m.Versions {
			s += fmt.Sprintf(" v%s %s", v.MiniAppVersion, v.AuditStatus)
		}
		var history int
		_ = db.Pool.QueryRow(ctx, `SELECT (SELECT count(*) FROM mini_app_order_events) + (SELECT count(*) FROM mini_app_audit_events)`).Scan(&history)
		return s + fmt.Sprintf("; history %d", history)
	}

	t.Run("OK", func(t *testing.T) {
		db := pgtest.New(t)
		res := db.IngestBatch(ctx, decide(t, batch...))
		for i, r := range res {
			if r.Err != nil || r.Outcome.Status != wantStatus[i] {
				t.Errorf("%d (%s at %d): %+v, want %s", i, batch[i].Method, batch[i].UTCTimestamp, r, wantStatus[i])
			}
		}
		got := state(db)
		if want := "auth cancelled token false; order SUCCESS; app audit_passed 1; v1 audit_passed v2 audit_passed; history 6"; got != want {
			t.Fatalf("state %q\nwant  %q", got, want)
		}

		// One at a time, oldest last: the same state.
		one := pgtest.New(t)
		for i := len(batch) - 1; i >= 0; i-- {
			if _, err := one.Ingest(ctx, decide(t, batch[i])[0]); err != nil {
				t.Fatal(err)
			}
		}
		if s := state(one); s != got {
			t.Fatalf("one at a time: %q\nin one batch:  %q", s, got)
		}
	})
}

// TestBatcher_Arriving shows when a batch waits to fill: while a
// transaction is in flight (here one held on a locked row) and a
// notification is announced as on its way, and never once nothing is.
func TestBatcher_Arriving(t *testing.T) {
	t.Parallel()
	db := pgtest.New(t)
	sizes := make(chan int, 8)
	b := postgres.NewBatcher(db, postgres.BatcherConfig{MaxWait: time.Hour, OnBatch: func(n int) { sizes <- n }})
	defer b.Close()
	ctx := context.Background()
	audit := func(miniApp string, ts int64) *notify.Notification {
		return testkit.Note(notify.MethodAuditPassed, `{"mini_app_id":"`+miniApp+`","mini_app_version":"0.0.1"}`, ts)
	}
	ingest := func(n *notify.Notification) <-chan error {
		done := make(chan error, 1)
		go func() {
			out, err := b.Ingest(ctx, decide(t, n)[0])
			if err == nil && out.Status != notify.StatusApplied {
				err = fmt.Errorf("outcome %+v", out)
			}
			done <- err
		}()
		return done
	}
	if err := <-ingest(audit("locked", 1)); err != nil {
		t.Fatal(err)
	}
	<-sizes
	// A transaction in flight: a newer change to the locked row waits.
	tx, err := db.Pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(ctx)
	if _, err := tx.Exec(ctx, `SELECT 1 FROM mini_apps WHERE mini_app_id = 'locked' FOR UPDATE`); err != nil {
		t.Fatal(err)
	}
	held := ingest(audit("locked", 2))
	time.Sleep(100 * time.Millisecond) // for its flusher to take it

	t.Run("WaitsForWhatIsComing", func(t *testing.T) {
		b.Arriving()
		first := ingest(audit("a1", 1))
		select {
		case err := <-first:
			t.Fatalf("flushed while a notification was on its way (%v)", err)
		case <-time.After(200 * time.Millisecond):
		}
		b.Arrived()
		second := ingest(audit("a2", 1))
		for _, done := range []<-chan error{first, second} {
			if err := <-done; err != nil {
				t.Fatal(err)
			}
		}
		if n := <-sizes; n != 2 {
			t.Fatalf("batch of %d; want the two together", n)
		}
	})
	t.Run("NothingComing", func(t *testing.T) {
		// MaxWait is an hour: only the rule can end this wait.
		if err := <-ingest(audit("a3", 1)); err != nil {
			t.Fatal(err)
		}
		if n := <-sizes; n != 1 {
			t.Fatalf("batch of %d", n)
		}
	})
	if err := tx.Rollback(ctx); err != nil {
		t.Fatal(err)
	}
	if err := <-held; err != nil {
		t.Fatal(err)
	}
}

func TestBatcher_Busy(t *testing.T) {
	t.Parallel()
	// No database: Busy looks only at the load.
	newBatcher := func(t *testing.T) *postgres.Batcher {
		b := postgres.NewBatcher(nil, postgres.BatcherConfig{})
		t.Cleanup(b.Close)
		return b
	}

	t.Run("Sustained", func(t *testing.T) {
		b := newBatcher(t)
		now := time.Now()
		for i := range 20 {
			b.SetLoad(2*postgres.BusyLoad, now.Add(time.Duration(i-20)*10*time.Millisecond))
		}
		b.LoadSampledAt(time.Now())
		if !b.Busy() {
			t.Fatal("not busy after 200 ms at twice BusyLoad")
		}
	})
	t.Run("Moment", func(t *testing.T) {
		// One batch's worth of queue at a moderate rate is not a busy intake.
		b := newBatcher(t)
		now := time.Now()
		for i := range 20 {
			b.SetLoad(postgres.BusyLoad/3, now.Add(time.Duration(i-20)*10*time.Millisecond))
		}
		b.SetLoad(4*postgres.BusyLoad, now)
		if b.Busy() {
			t.Fatal("busy after a moment at 4 times BusyLoad")
		}
	})
	t.Run("Decays", func(t *testing.T) {
		// Once batches stop coming, intake is soon no longer busy.
		b := newBatcher(t)
		now := time.Now()
		for i := range 20 {
			b.SetLoad(2*postgres.BusyLoad, now.Add(time.Duration(i-20)*10*time.Millisecond))
		}
		b.LoadSampledAt(time.Now().Add(-200 * time.Millisecond))
		if b.Busy() {
			t.Fatal("still busy 200 ms after the last batch")
		}
	})
}
