package httpapi_test

import (
	"context"
	"fmt"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/alipay-notify-gateway/gateway/internal/alipay"
	"github.com/alipay-notify-gateway/gateway/internal/httpapi"
	"github.com/alipay-notify-gateway/gateway/internal/intake"
	"github.com/alipay-notify-gateway/gateway/internal/notify"
	"github.com/alipay-notify-gateway/gateway/internal/pgtest"
	"github.com/alipay-notify-gateway/gateway/internal/testkit"
)

// TestNotify_FoldingReplay is the attack of the hardening issue, end to end:
// a captured V2-signed grant, re-sent without sign_type and with
// "&sign_type=RSA2" folded into notify_id, gives the same signed string. It
// verified, and as a new notify_id put back a token already refreshed.
func TestNotify_FoldingReplay(t *testing.T) {
	t.Parallel()
	g := newGateway(t)
	grant := testkit.Sample(t, "auth-granted", testkit.AppID)
	genuine := testkit.Sign(t, grant, testkit.AlipayKey(), alipay.FormV2).Encode() // V2, as the SDKs sign some messages
	g.mustAccept(t, genuine)
	before := g.stateRows(t)
	s, _ := alipay.ParseForm([]byte(genuine))
	s["notify_id"] += "&sign_type=" + s["sign_type"]
	for name, f := range map[string]alipay.Form{
		"ErrSignTypeDropped": func() alipay.Form { c := copyForm(s); delete(c, "sign_type"); return c }(),
		"ErrSignTypeKept":    s,
	} {
		t.Run(name, func(t *testing.T) {
			if code, reply := g.post(t, f.Encode()); code != 400 || reply != "fail" {
				t.Fatalf("got %d %q, want 400 fail", code, reply)
			}
		})
	}
	if after := g.stateRows(t); after != before {
		t.Fatalf("the replay wrote %d rows", after-before)
	}
}

func copyForm(f alipay.Form) alipay.Form {
	c := alipay.Form{}
	for k, v := range f {
		c[k] = v
	}
	return c
}

// TestNotify_FutureTimestamp: one notification dated 2286 used to make every
// later genuine one stale.
func TestNotify_FutureTimestamp(t *testing.T) {
	t.Parallel()
	g := newGateway(t)
	now := time.Now().UnixMilli()
	audit := func(method string, ts int64) string {
		return testkit.Body(t, testkit.Form(testkit.AppID, method, `{"mini_app_id":"future-1","mini_app_version":"1"}`, ts), testkit.AlipayKey())
	}
	t.Run("Err2286", func(t *testing.T) {
		if code, reply := g.post(t, audit(notify.MethodAuditPassed, 9999999999999)); code != 425 || reply != "fail" {
			t.Fatalf("got %d %q, want 425 fail", code, reply)
		}
		if n := g.stateRows(t); n != 0 {
			t.Fatalf("%d rows written", n)
		}
	})
	t.Run("ErrTenMinutesAhead", func(t *testing.T) {
		if code, _ := g.post(t, audit(notify.MethodAuditPassed, now+10*60*1000)); code != 425 {
			t.Fatalf("got %d", code)
		}
	})
	t.Run("OK", func(t *testing.T) {
		g.mustAccept(t, audit(notify.MethodAuditRejected, now))
		g.mustAccept(t, audit(notify.MethodAuditPassed, now+60*1000)) // within the skew
		m, err := g.db.MiniApp(context.Background(), "future-1")
		if err != nil || m.AuditStatus != notify.AuditPassed {
			t.Fatalf("%+v %v", m, err)
		}
	})
}

// TestNotify_NotifyIDConflict: the same notify_id with other signed content
// keeps the first and refuses the second.
func TestNotify_NotifyIDConflict(t *testing.T) {
	t.Parallel()
	g := newGateway(t)
	first := testkit.Form(testkit.AppID, notify.MethodAuditPassed, `{"mini_app_id":"conflict-1","mini_app_version":"1"}`, 1000)
	g.mustAccept(t, testkit.Body(t, first, testkit.AlipayKey()))
	second := copyForm(first)
	second["msg_method"] = notify.MethodAuditRejected
	second["utc_timestamp"] = "2000"
	if code, reply := g.post(t, testkit.Body(t, second, testkit.AlipayKey())); code != 409 || reply != "fail" {
		t.Fatalf("got %d %q, want 409 fail", code, reply)
	}
	st, _, dc := g.status(t, testkit.AppID, first["notify_id"])
	m, _ := g.db.MiniApp(context.Background(), "conflict-1")
	if st != "applied" || dc != 1 || m.AuditStatus != notify.AuditPassed {
		t.Fatalf("status %s count %d mini-app %+v", st, dc, m)
	}
}

// TestNotify_ForeignEntity: with two ISV apps configured, one app's
// notification about a mini-app the other owns changes nothing.
func TestNotify_ForeignEntity(t *testing.T) {
	t.Parallel()
	g := newGateway(t)
	biz := `{"mini_app_id":"foreign-1","mini_app_version":"1"}`
	owner := testkit.Form(testkit.CertAppID, notify.MethodAuditPassed, biz, 1000)
	g.mustAccept(t, testkit.Body(t, owner, testkit.PKI().Alipay.Key))
	intruder := testkit.Form(testkit.AppID, notify.MethodAuditRejected, biz, 2000)
	g.mustAccept(t, testkit.Body(t, intruder, testkit.AlipayKey())) // kept, acknowledged: a resend would not change it
	st, e, _ := g.status(t, testkit.AppID, intruder["notify_id"])
	if st != "failed" || !strings.Contains(e, "belongs to app "+testkit.CertAppID) {
		t.Fatalf("status %s error %q", st, e)
	}
	m, _ := g.db.MiniApp(context.Background(), "foreign-1")
	if m.AppID != testkit.CertAppID || m.AuditStatus != notify.AuditPassed {
		t.Fatalf("%+v", m)
	}
}

// TestNotify_GrantWithoutTokenKey: a grant whose tokens cannot be sealed is
// not acknowledged (Alipay resends it), and nothing is stored.
func TestNotify_GrantWithoutTokenKey(t *testing.T) {
	t.Parallel()
	g := startGateway(t, pgtest.New(t), rig{registry: notify.NewRegistry(notify.RegistryConfig{})})
	if code, reply := g.post(t, testkit.Body(t, testkit.Sample(t, "auth-granted", testkit.AppID), testkit.AlipayKey())); code != 503 || reply != "fail" {
		t.Fatalf("got %d %q, want 503 fail", code, reply)
	}
	if n := g.stateRows(t); n != 0 {
		t.Fatalf("%d rows written", n)
	}
	g.mustAccept(t, testkit.Body(t, testkit.Sample(t, "audit-passed", testkit.AppID), testkit.AlipayKey())) // the rest goes on
}

// TestNotify_LogClipped: a forged request's values are clipped in its log
// line (one used to make a 60 KB line).
func TestNotify_LogClipped(t *testing.T) {
	t.Parallel()
	v := testkit.Verifier(t, testkit.KeyApp())
	var logs testkit.LogBuffer
	db := pgtest.New(t)
	pipeline := intake.New(intake.Config{Registry: testkit.Registry(t), Inbox: db, Logger: zerolog.New(&logs)})
	srv := httptest.NewServer(httpapi.New(httpapi.Config{Verifier: v, Intake: pipeline, Store: db, Logger: zerolog.New(&logs), MaxBodyBytes: 64 << 10}))
	t.Cleanup(srv.Close)
	g := &gateway{db: db, srv: srv}
	long := strings.Repeat("x", 30000)
	for _, body := range []string{
		fmt.Sprintf("app_id=%s&notify_id=%s&msg_method=a.b&sign_type=RSA2&sign=AAAA", testkit.AppID, long),
		fmt.Sprintf("app_id=%s&notify_id=n&msg_method=%s&sign_type=RSA2&sign=AAAA", long, long),
		fmt.Sprintf("app_id=%s&notify_id=n&msg_method=a.b&sign_type=%s&sign=AAAA", testkit.AppID, long),
	} {
		if code, _ := g.post(t, body); code < 400 {
			t.Fatalf("accepted: %d", code)
		}
	}
	for _, line := range strings.Split(strings.TrimSpace(logs.String()), "\n") {
		if len(line) > 2048 {
			t.Fatalf("log line of %d bytes: %.300s", len(line), line)
		}
	}
}
