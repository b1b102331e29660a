package postgres_test

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/alipay-notify-gateway/gateway/internal/notify"
	"github.com/alipay-notify-gateway/gateway/internal/pgtest"
	"github.com/alipay-notify-gateway/gateway/internal/postgres"
)

func TestIngestBatch(t *testing.T) {
	t.Parallel()
	db := pgtest.New(t, nil)
	ctx := context.Background()
	t.Run("CopiesInOneBatch", func(t *testing.T) {
		n := note(notify.MethodAuditPassed, `{"mini_app_id":"c1","mini_app_version":"1"}`, 1)
		res := db.IngestBatch(ctx, []*notify.Notification{n, n, n})
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
		newer := note(notify.MethodAuditPassed, `{"mini_app_id":"c2","mini_app_version":"1"}`, 20)
		older := note(notify.MethodAuditRejected, `{"mini_app_id":"c2","mini_app_version":"1"}`, 10)
		res := db.IngestBatch(ctx, []*notify.Notification{newer, older})
		if res[0].Outcome.Status != notify.StatusApplied || res[1].Outcome.Status != notify.StatusStale {
			t.Fatalf("%+v", res)
		}
	})
	t.Run("BadRowFailsAlone", func(t *testing.T) {
		good1 := note(notify.MethodMerchantConfirmed, `{"order_no":"b1","status":"PROCESS"}`, 1)
		// A NUL character is valid JSON but not valid Postgres text.
		bad := note(notify.MethodAuditRejected, `{"mini_app_id":"b2","mini_app_version":"1","audit_reason":"x\u0000y"}`, 1)
		good2 := note(notify.MethodMerchantConfirmed, `{"order_no":"b3","status":"PROCESS"}`, 1)
		res := db.IngestBatch(ctx, []*notify.Notification{good1, bad, good2})
		if res[0].Outcome.Status != notify.StatusApplied || res[2].Outcome.Status != notify.StatusApplied {
			t.Fatalf("%+v", res)
		}
		if res[1].Err != nil || res[1].Outcome.Status != notify.StatusFailed || !strings.Contains(res[1].Outcome.Error, "store:") {
			t.Fatalf("%+v", res[1])
		}
		if n, err := db.Notification(ctx, app, bad.NotifyID); err != nil || n.Status != notify.StatusFailed {
			t.Fatalf("bad row not kept: %+v %v", n, err)
		}
	})
}

func TestBatcher_Ingest(t *testing.T) {
	t.Parallel()
	db := pgtest.New(t, nil)
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
		var wg sync.WaitGroup
		errs := make(chan error, 2*n)
		for i := range n {
			wg.Add(1)
			go func() {
				defer wg.Done()
				x := note(notify.MethodMerchantConfirmed, fmt.Sprintf(`{"order_no":"g%d","status":"PROCESS"}`, i), 1)
				for range 2 { // and a resend, possibly in the same batch
					out, err := b.Ingest(context.Background(), x)
					if err != nil || out.Status != notify.StatusApplied {
						errs <- fmt.Errorf("%+v %v", out, err)
					}
				}
			}()
		}
		wg.Wait()
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
		_, err := b.Ingest(context.Background(), note(notify.MethodAuditPassed, `{}`, 1))
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
	_, err = b.Ingest(context.Background(), note(notify.MethodAuditPassed, `{}`, 1))
	if notify.ErrorCode(err) != notify.EUNAVAILABLE {
		t.Fatalf("err = %v", err)
	}
}
