package postgres_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/alipay-notify-gateway/gateway/internal/notify"
	"github.com/alipay-notify-gateway/gateway/internal/pgtest"
	"github.com/alipay-notify-gateway/gateway/internal/postgres"
	"github.com/alipay-notify-gateway/gateway/internal/testkit"
)

// decide returns what the application decides of ns (testkit.Decide).
func decide(t testing.TB, ns ...*notify.Notification) []notify.Decided {
	t.Helper()
	out := make([]notify.Decided, len(ns))
	for i, n := range ns {
		out[i] = testkit.Decide(t, n)
	}
	return out
}

// redecide is Reprocess's decide: the registry, as intake.Pipeline runs it.
func redecide(t testing.TB) func(*notify.Notification) (notify.Decided, error) {
	return testkit.Registry(t).Decide
}

func ingest(t *testing.T, db *postgres.DB, n *notify.Notification) notify.Outcome {
	t.Helper()
	out, err := db.Ingest(context.Background(), decide(t, n)[0])
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func want(t *testing.T, out notify.Outcome, status notify.Status, dup bool) {
	t.Helper()
	if out.Status != status || out.Duplicate != dup {
		t.Fatalf("outcome %+v; want status %s duplicate %v", out, status, dup)
	}
}

func TestIngest_AuditHandlers(t *testing.T) {
	t.Parallel()
	db := pgtest.New(t)
	ctx := context.Background()
	rejected := `{"mini_app_id":"m1","mini_app_version":"1.0.0","bundle_id":"b","audit_reason":"bad","base_audit":"REJECT","promote_audit":"REJECT","base_audit_reason":{"audit_images":["a.png"],"memos":[{"memo":"x","memo_image_list":["m.png"]}]}}`
	t.Run("Applied", func(t *testing.T) {
		want(t, ingest(t, db, testkit.Note(notify.MethodAuditRejected, rejected, 100)), notify.StatusApplied, false)
		m, err := db.MiniApp(ctx, "m1")
		if err != nil {
			t.Fatal(err)
		}
		v := m.Versions[0]
		if m.AuditStatus != notify.AuditRejected || v.AuditStatus != notify.AuditRejected || v.BaseAudit != "REJECT" ||
			!strings.Contains(string(v.BaseAuditReason), "m.png") || string(v.PromoteAuditReason) != "null" {
			t.Fatalf("%+v %+v", m, v)
		}
	})
	t.Run("Duplicate", func(t *testing.T) {
		n := testkit.Note(notify.MethodAuditPassed, `{"mini_app_id":"m1","mini_app_version":"1.0.0"}`, 200)
		want(t, ingest(t, db, n), notify.StatusApplied, false)
		out := ingest(t, db, n)
		want(t, out, notify.StatusApplied, true)
		if out.DeliveryCount != 2 {
			t.Fatalf("delivery count %d", out.DeliveryCount)
		}
		h, _ := db.AuditHistory(ctx, "m1")
		if len(h) != 2 {
			t.Fatalf("history %d entries", len(h))
		}
	})
	t.Run("Stale", func(t *testing.T) {
		// A newer passed (200) is there: an older rejection (150) changes nothing.
		want(t, ingest(t, db, testkit.Note(notify.MethodAuditRejected, rejected, 150)), notify.StatusStale, false)
		m, _ := db.MiniApp(ctx, "m1")
		if m.AuditStatus != notify.AuditPassed || m.Versions[0].AuditStatus != notify.AuditPassed {
			t.Fatalf("%+v", m)
		}
		h, _ := db.AuditHistory(ctx, "m1")
		if len(h) != 3 || h[1].Applied {
			t.Fatalf("history %+v", h)
		}
	})
	t.Run("NoVersionUpdatesAppOnly", func(t *testing.T) {
		want(t, ingest(t, db, testkit.Note(notify.MethodBaseAuditPassed, `{"mini_app_id":"m1"}`, 300)), notify.StatusApplied, false)
		m, _ := db.MiniApp(ctx, "m1")
		if m.AuditStatus != notify.BaseAuditPassed || len(m.Versions) != 1 || m.Versions[0].AuditStatus != notify.AuditPassed {
			t.Fatalf("%+v", m)
		}
	})
	t.Run("TieDecidedByNotifyID", func(t *testing.T) {
		a := testkit.Note(notify.MethodAuditPassed, `{"mini_app_id":"tie","mini_app_version":"1"}`, 500)
		b := testkit.Note(notify.MethodAuditRejected, `{"mini_app_id":"tie","mini_app_version":"1"}`, 500)
		a.NotifyID, b.NotifyID = "tie-b", "tie-a" // b sorts first, so a wins whatever the order
		ingest(t, db, a)
		want(t, ingest(t, db, b), notify.StatusStale, false)
		m, _ := db.MiniApp(ctx, "tie")
		if m.AuditStatus != notify.AuditPassed {
			t.Fatalf("%+v", m)
		}
	})
	for name, biz := range map[string]string{"NotJSON": "not json", "NoMiniAppID": `{"mini_app_version":"1"}`, "Array": `[1]`} {
		t.Run("Malformed/"+name, func(t *testing.T) {
			out := ingest(t, db, testkit.Note(notify.MethodAuditPassed, biz, 1))
			if out.Status != notify.StatusFailed || out.Error == "" {
				t.Fatalf("%+v", out)
			}
		})
	}
}

func TestIngest_OrderHandlers(t *testing.T) {
	t.Parallel()
	db := pgtest.New(t)
	ctx := context.Background()
	confirmed := func(status string) string {
		return `{"order_no":"o1","out_order_no":"out1","min_app_id":"2021","status":"` + status + `","pid":"2088"}`
	}
	t.Run("Applied", func(t *testing.T) {
		want(t, ingest(t, db, testkit.Note(notify.MethodMerchantConfirmed, confirmed("PROCESS"), 100)), notify.StatusApplied, false)
		o, err := db.Order(ctx, "o1")
		if err != nil || o.Kind != notify.OrderKindMerchantConfirmed || o.Status != "PROCESS" || o.MiniAppID != "2021" || o.PID != "2088" {
			t.Fatalf("%+v %v", o, err)
		}
	})
	t.Run("NewerWithEmptyIDKeepsThem", func(t *testing.T) {
		want(t, ingest(t, db, testkit.Note(notify.MethodMerchantConfirmed, `{"order_no":"o1","min_app_id":"","status":"AGREED"}`, 200)), notify.StatusApplied, false)
		o, _ := db.Order(ctx, "o1")
		if o.Status != "AGREED" || o.MiniAppID != "2021" || o.OutOrderNo != "out1" {
			t.Fatalf("%+v", o)
		}
	})
	t.Run("Stale", func(t *testing.T) {
		want(t, ingest(t, db, testkit.Note(notify.MethodMerchantConfirmed, confirmed("REJECTED"), 150)), notify.StatusStale, false)
		o, _ := db.Order(ctx, "o1")
		if o.Status != "AGREED" || len(o.History) != 3 || o.History[1].Status != "REJECTED" || o.History[1].Applied {
			t.Fatalf("%+v", o)
		}
	})
	t.Run("Duplicate", func(t *testing.T) {
		n := testkit.Note(notify.MethodFastRegisterChanged, `{"order_no":"f1","out_order_no":"x","merchant_app_id":"3","status":"SOMETHING_NEW","app_name":"张三","merchant_id":"m"}`, 1)
		want(t, ingest(t, db, n), notify.StatusApplied, false)
		want(t, ingest(t, db, n), notify.StatusApplied, true)
		o, _ := db.Order(ctx, "f1")
		if o.Kind != notify.OrderKindFastRegister || o.Status != "SOMETHING_NEW" || o.MiniAppID != "3" || o.AppName != "张三" || len(o.History) != 1 {
			t.Fatalf("%+v", o)
		}
	})
	t.Run("Malformed", func(t *testing.T) {
		out := ingest(t, db, testkit.Note(notify.MethodFastRegisterChanged, `{"status":"X"}`, 1))
		if out.Status != notify.StatusFailed || !strings.Contains(out.Error, "order_no") {
			t.Fatalf("%+v", out)
		}
	})
}

func TestIngest_AuthHandlers(t *testing.T) {
	t.Parallel()
	db := pgtest.New(t)
	ctx := context.Background()
	grant := func(authTime int64) *notify.Notification {
		n := testkit.Note(notify.MethodAuthGranted, fmt.Sprintf(`{"detail":{"app_id":"%s","auth_app_id":"merchant1","auth_time":%d,"app_auth_token":"tok-%d","app_refresh_token":"ref","expires_in":"3600","re_expires_in":7200,"user_id":"2088u"}}`, testkit.AppID, authTime, authTime), authTime)
		n.Params["status"] = "execute_auth"
		return n
	}
	cancel := func(ts int64) *notify.Notification {
		return testkit.Note(notify.MethodAuthCancelled, `{"app_auth_token":"tok","app_id":"x","auth_app_id":"merchant1","user_id":"2088u"}`, ts)
	}
	t.Run("Applied", func(t *testing.T) {
		n := grant(1000)
		if strings.Contains(n.BizContent, "tok-1000") || n.Secrets["app_auth_token"] != "tok-1000" {
			t.Fatalf("not redacted: %s", n.BizContent)
		}
		want(t, ingest(t, db, n), notify.StatusApplied, false)
		a, err := db.Authorization(ctx, "", "merchant1")
		if err != nil || a.Status != "authorized" || !a.HasToken || a.UserID != "2088u" || a.ExpiresAt == nil ||
			!a.ExpiresAt.Equal(time.UnixMilli(1000).Add(time.Hour)) {
			t.Fatalf("%+v %v", a, err)
		}
		var sealed []byte
		if err := db.Pool.QueryRow(ctx, "SELECT app_auth_token FROM authorizations").Scan(&sealed); err != nil {
			t.Fatal(err)
		}
		if strings.Contains(string(sealed), "tok-1000") {
			t.Fatal("token stored in clear")
		}
		tok, err := testkit.Sealer(t).Open(sealed, notify.TokenOwner(testkit.AppID, "merchant1"))
		if err != nil || tok != "tok-1000" {
			t.Fatalf("open: %q %v", tok, err)
		}
		var stored string
		_ = db.Pool.QueryRow(ctx, "SELECT biz_content || params::text FROM notifications WHERE notify_id = $1", n.NotifyID).Scan(&stored)
		if strings.Contains(stored, "tok-1000") || strings.Contains(stored, `"ref"`) {
			t.Fatal("token stored in the inbox")
		}
	})
	t.Run("CancelWipesTokens", func(t *testing.T) {
		want(t, ingest(t, db, cancel(2000)), notify.StatusApplied, false)
		a, _ := db.Authorization(ctx, testkit.AppID, "merchant1")
		if a.Status != "cancelled" || a.HasToken || a.CancelledAt == nil {
			t.Fatalf("%+v", a)
		}
	})
	t.Run("OlderGrantStale", func(t *testing.T) {
		want(t, ingest(t, db, grant(1500)), notify.StatusStale, false)
		a, _ := db.Authorization(ctx, testkit.AppID, "merchant1")
		if a.Status != "cancelled" || a.HasToken {
			t.Fatalf("%+v", a)
		}
	})
	t.Run("NewerGrantAfterCancel", func(t *testing.T) {
		want(t, ingest(t, db, grant(3000)), notify.StatusApplied, false)
		want(t, ingest(t, db, cancel(2500)), notify.StatusStale, false)
		a, _ := db.Authorization(ctx, testkit.AppID, "merchant1")
		if a.Status != "authorized" || !a.HasToken {
			t.Fatalf("%+v", a)
		}
	})
	t.Run("Duplicate", func(t *testing.T) {
		n := cancel(4000)
		want(t, ingest(t, db, n), notify.StatusApplied, false)
		want(t, ingest(t, db, n), notify.StatusApplied, true)
	})
	t.Run("CancelOfUnknownThenOlderGrant", func(t *testing.T) {
		c := testkit.Note(notify.MethodAuthCancelled, `{"auth_app_id":"merchant2"}`, 5000)
		want(t, ingest(t, db, c), notify.StatusApplied, false)
		g := testkit.Note(notify.MethodAuthGranted, `{"detail":{"auth_app_id":"merchant2","auth_time":4000,"app_auth_token":"t"}}`, 4000)
		want(t, ingest(t, db, g), notify.StatusStale, false)
	})
	t.Run("Malformed", func(t *testing.T) {
		for _, n := range []*notify.Notification{
			testkit.Note(notify.MethodAuthCancelled, `{"user_id":"1"}`, 1),
			testkit.Note(notify.MethodAuthGranted, `{"detail":{"auth_app_id":"m3","auth_time":1}}`, 1), // no token
			testkit.Note(notify.MethodAuthGranted, `nope`, 1),
		} {
			if out := ingest(t, db, n); out.Status != notify.StatusFailed || out.Error == "" {
				t.Fatalf("%+v", out)
			}
		}
	})
}

func TestIngest_Unhandled(t *testing.T) {
	t.Parallel()
	db := pgtest.New(t)
	n := testkit.Note("alipay.open.future.thing", `{"a":1}`, 1)
	want(t, ingest(t, db, n), notify.StatusUnhandled, false)
	want(t, ingest(t, db, n), notify.StatusUnhandled, true)
}
