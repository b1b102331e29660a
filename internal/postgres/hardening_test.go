package postgres_test

import (
	"context"
	"crypto/sha256"
	"strings"
	"sync"
	"testing"

	"github.com/alipay-notify-gateway/gateway/internal/notify"
	"github.com/alipay-notify-gateway/gateway/internal/pgtest"
	"github.com/alipay-notify-gateway/gateway/internal/testkit"
)

// signed returns testkit.Note(...) with a content digest, as the verifier sets it.
func signed(method, biz string, ts int64) *notify.Notification {
	n := testkit.Note(method, biz, ts)
	d := sha256.Sum256([]byte(n.NotifyID + biz))
	n.ContentDigest = d[:]
	return n
}

// replayOf returns a copy of n under another notify_id with the same signed
// content: what a folding replay, or a WebSocket message re-sent under a new
// x-msgId, would be once verified.
func replayOf(n *notify.Notification, id string) *notify.Notification {
	r := *n
	r.NotifyID = id
	return &r
}

func TestIngest_Replay(t *testing.T) {
	t.Parallel()
	db := pgtest.New(t)
	ctx := context.Background()
	historyOf := func(miniApp string) int {
		h, err := db.AuditHistory(ctx, miniApp)
		if err != nil {
			t.Fatal(err)
		}
		return len(h)
	}
	t.Run("OK", func(t *testing.T) {
		n := signed(notify.MethodAuditPassed, `{"mini_app_id":"r1","mini_app_version":"1"}`, 100)
		want(t, ingest(t, db, n), notify.StatusApplied, false)
		out := ingest(t, db, replayOf(n, n.NotifyID+"x"))
		if !out.Duplicate || out.ReplayOf != n.NotifyID || out.Status != notify.StatusApplied || out.Label() != "replay" {
			t.Fatalf("%+v", out)
		}
		if _, err := db.Notification(ctx, testkit.AppID, n.NotifyID+"x"); notify.ErrorCode(err) != notify.ENOTFOUND {
			t.Fatalf("the replay was stored: %v", err)
		}
		if h := historyOf("r1"); h != 1 {
			t.Fatalf("history %d", h)
		}
	})
	t.Run("ReplayOfOlderAfterNewer", func(t *testing.T) {
		// A newer rejection is applied; the passed notification, replayed
		// under a notify_id that would win the tie, changes nothing.
		passed := signed(notify.MethodAuditPassed, `{"mini_app_id":"r2","mini_app_version":"1"}`, 100)
		rejected := signed(notify.MethodAuditRejected, `{"mini_app_id":"r2","mini_app_version":"1"}`, 200)
		ingest(t, db, passed)
		ingest(t, db, rejected)
		replay := replayOf(passed, "zzzz")
		replay.UTCTimestamp = 300 // as a WebSocket replay may claim
		out := ingest(t, db, replay)
		if out.ReplayOf != passed.NotifyID {
			t.Fatalf("%+v", out)
		}
		m, _ := db.MiniApp(ctx, "r2")
		if m.AuditStatus != notify.AuditRejected || historyOf("r2") != 2 {
			t.Fatalf("%+v", m)
		}
	})
	t.Run("InOneBatch", func(t *testing.T) {
		n := signed(notify.MethodMerchantConfirmed, `{"order_no":"r3","status":"PROCESS"}`, 1)
		res := db.IngestBatch(ctx, decide(t, n, replayOf(n, "r3-replay")))
		if res[0].Err != nil || res[0].Outcome.Status != notify.StatusApplied || res[1].Outcome.ReplayOf != n.NotifyID {
			t.Fatalf("%+v", res)
		}
		o, err := db.Order(ctx, "r3")
		if err != nil || len(o.History) != 1 {
			t.Fatalf("%+v %v", o, err)
		}
	})
	t.Run("Racing", func(t *testing.T) {
		// The same signed content under 8 notify_ids at once, from as many
		// transactions (replicas): one effect, one row.
		n := signed(notify.MethodAuditPassed, `{"mini_app_id":"r4","mini_app_version":"1"}`, 1)
		var wg sync.WaitGroup
		outs := make([]notify.Outcome, 8)
		errs := make([]error, 8)
		for i := range outs {
			wg.Go(func() {
				outs[i], errs[i] = db.Ingest(ctx, decide(t, replayOf(n, n.NotifyID+strings.Repeat("x", i)))[0])
			})
		}
		wg.Wait()
		fresh := 0
		for i := range outs {
			if errs[i] != nil {
				t.Fatalf("%d: %v", i, errs[i])
			}
			if outs[i].ReplayOf == "" {
				fresh++
			}
		}
		var rows int
		_ = db.Pool.QueryRow(ctx, "SELECT count(*) FROM notifications WHERE content_digest = $1", n.ContentDigest).Scan(&rows)
		if fresh != 1 || rows != 1 || historyOf("r4") != 1 {
			t.Fatalf("fresh %d rows %d history %d", fresh, rows, historyOf("r4"))
		}
	})
}

func TestIngest_NotifyIDConflict(t *testing.T) {
	t.Parallel()
	db := pgtest.New(t)
	ctx := context.Background()
	first := signed(notify.MethodAuditPassed, `{"mini_app_id":"c1","mini_app_version":"1"}`, 100)
	want(t, ingest(t, db, first), notify.StatusApplied, false)
	t.Run("ErrOtherContentSameChannel", func(t *testing.T) {
		second := signed(notify.MethodAuditRejected, `{"mini_app_id":"c1","mini_app_version":"1"}`, 200)
		second.NotifyID = first.NotifyID
		_, err := db.Ingest(ctx, decide(t, second)[0])
		if notify.ErrorCode(err) != notify.ECONFLICT || notify.ErrorReason(err) != "notify_id_conflict" {
			t.Fatalf("err = %v", err)
		}
		stored, _ := db.Notification(ctx, testkit.AppID, first.NotifyID)
		m, _ := db.MiniApp(ctx, "c1")
		if stored.DeliveryCount != 1 || stored.MsgMethod != notify.MethodAuditPassed || m.AuditStatus != notify.AuditPassed {
			t.Fatalf("the first was changed: %+v %+v", stored, m)
		}
	})
	t.Run("ErrInOneBatch", func(t *testing.T) {
		a := signed(notify.MethodAuditPassed, `{"mini_app_id":"c2","mini_app_version":"1"}`, 100)
		b := signed(notify.MethodAuditRejected, `{"mini_app_id":"c2","mini_app_version":"1"}`, 200)
		b.NotifyID = a.NotifyID
		res := db.IngestBatch(ctx, decide(t, a, b))
		if res[0].Err != nil || notify.ErrorCode(res[1].Err) != notify.ECONFLICT {
			t.Fatalf("%+v", res)
		}
	})
	t.Run("OtherChannel", func(t *testing.T) {
		// The same message by WebSocket has other signed bytes (the data
		// object): a duplicate, as ever.
		ws := signed(notify.MethodAuditPassed, `{"mini_app_id":"c1","mini_app_version":"1"}`, 100)
		ws.NotifyID, ws.Channel = first.NotifyID, notify.ChannelWebSocket
		out := ingest(t, db, ws)
		if !out.Duplicate || out.DeliveryCount != 2 {
			t.Fatalf("%+v", out)
		}
	})
	t.Run("SameContent", func(t *testing.T) {
		out := ingest(t, db, first)
		if !out.Duplicate || out.DeliveryCount != 3 {
			t.Fatalf("%+v", out)
		}
	})
}

func TestIngest_Ownership(t *testing.T) {
	t.Parallel()
	db := pgtest.New(t)
	ctx := context.Background()
	const other = testkit.OtherAppID
	of := func(appID string, n *notify.Notification) *notify.Notification {
		n.AppID = appID
		return n
	}
	t.Run("ErrMiniAppOfAnotherApp", func(t *testing.T) {
		want(t, ingest(t, db, testkit.Note(notify.MethodAuditPassed, `{"mini_app_id":"o1","mini_app_version":"1"}`, 100)), notify.StatusApplied, false)
		out := ingest(t, db, of(other, testkit.Note(notify.MethodAuditRejected, `{"mini_app_id":"o1","mini_app_version":"1"}`, 200)))
		if out.Status != notify.StatusFailed || !out.Foreign || out.Label() != "foreign" ||
			!strings.Contains(out.Error, "mini-app o1 belongs to app "+testkit.AppID) {
			t.Fatalf("%+v", out)
		}
		m, _ := db.MiniApp(ctx, "o1")
		h, _ := db.AuditHistory(ctx, "o1")
		if m.AppID != testkit.AppID || m.AuditStatus != notify.AuditPassed || m.Versions[0].AuditStatus != notify.AuditPassed || len(h) != 1 {
			t.Fatalf("state changed: %+v %+v", m, h)
		}
	})
	t.Run("ErrNewVersionOfAnotherAppsMiniApp", func(t *testing.T) {
		out := ingest(t, db, of(other, testkit.Note(notify.MethodAuditPassed, `{"mini_app_id":"o1","mini_app_version":"2"}`, 300)))
		if !out.Foreign {
			t.Fatalf("%+v", out)
		}
		m, _ := db.MiniApp(ctx, "o1")
		if len(m.Versions) != 1 || m.MiniAppVersion != "1" {
			t.Fatalf("%+v", m)
		}
	})
	t.Run("ErrOrderOfAnotherApp", func(t *testing.T) {
		ingest(t, db, testkit.Note(notify.MethodMerchantConfirmed, `{"order_no":"o2","status":"PROCESS"}`, 100))
		out := ingest(t, db, of(other, testkit.Note(notify.MethodMerchantConfirmed, `{"order_no":"o2","status":"AGREED","min_app_id":"x"}`, 200)))
		if !out.Foreign || !strings.Contains(out.Error, "order o2 belongs to app "+testkit.AppID) {
			t.Fatalf("%+v", out)
		}
		o, _ := db.Order(ctx, "o2")
		if o.AppID != testkit.AppID || o.Status != "PROCESS" || len(o.History) != 1 {
			t.Fatalf("%+v", o)
		}
	})
	t.Run("OwnerGoesOn", func(t *testing.T) {
		want(t, ingest(t, db, testkit.Note(notify.MethodMerchantConfirmed, `{"order_no":"o2","status":"AGREED"}`, 300)), notify.StatusApplied, false)
		if o, _ := db.Order(ctx, "o2"); o.AppID != testkit.AppID || o.Status != "AGREED" {
			t.Fatalf("%+v", o)
		}
	})
	t.Run("ReprocessStaysForeign", func(t *testing.T) {
		n := of(other, testkit.Note("alipay.open.mini.unknown", `{}`, 1))
		ingest(t, db, n) // unhandled: reprocess applies to it
		n2 := of(other, testkit.Note(notify.MethodAuditPassed, `{"mini_app_id":"o1","mini_app_version":"3"}`, 400))
		if out := ingest(t, db, n2); !out.Foreign {
			t.Fatalf("%+v", out)
		}
		got, err := db.Reprocess(ctx, other, n2.NotifyID, redecide(t))
		if err != nil || got.Status != notify.StatusFailed || !strings.HasPrefix(got.Error, "foreign: ") {
			t.Fatalf("%+v %v", got, err)
		}
	})
	t.Run("AuthorizationsPerApp", func(t *testing.T) {
		// A merchant's authorization of each ISV app is its own row: one
		// app's cancellation leaves the other's grant as it is.
		grant := func(appID string) *notify.Notification {
			n := of(appID, testkit.Note(notify.MethodAuthGranted, `{"detail":{"auth_app_id":"m1","auth_time":1000,"app_auth_token":"t","app_refresh_token":"r"}}`, 1000))
			n.Params["status"] = "execute_auth"
			return n
		}
		ingest(t, db, grant(testkit.AppID))
		ingest(t, db, grant(other))
		want(t, ingest(t, db, of(other, testkit.Note(notify.MethodAuthCancelled, `{"auth_app_id":"m1"}`, 2000))), notify.StatusApplied, false)
		mine, _ := db.Authorization(ctx, testkit.AppID, "m1")
		theirs, _ := db.Authorization(ctx, other, "m1")
		if mine.Status != "authorized" || theirs.Status != "cancelled" {
			t.Fatalf("%+v %+v", mine, theirs)
		}
	})
}
