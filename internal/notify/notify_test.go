package notify_test

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/alipay-notify-gateway/gateway/internal/notify"
	"github.com/alipay-notify-gateway/gateway/internal/redact"
	"github.com/alipay-notify-gateway/gateway/internal/samples"
	"github.com/alipay-notify-gateway/gateway/internal/testkit"
)

func TestRegistry_Handler(t *testing.T) {
	t.Parallel()
	reg := notify.NewRegistry(notify.RegistryConfig{Sealer: testkit.Sealer(t)})
	apply := func(t *testing.T, n *notify.Notification) (notify.Change, error) {
		t.Helper()
		h, ok := reg.Handler(n.Method)
		if !ok {
			t.Fatalf("no handler for %s", n.Method)
		}
		return h(n)
	}
	t.Run("OK", func(t *testing.T) {
		for _, s := range samples.All() {
			c, err := apply(t, testkit.SampleNote(t, s.Name))
			if err != nil || c == nil || c.Ordering().NotifyID == "" {
				t.Fatalf("%s: %v %v", s.Name, c, err)
			}
		}
		c, _ := apply(t, testkit.SampleNote(t, "audit-rejected"))
		a := c.(notify.AuditChange)
		if a.AuditStatus != notify.AuditRejected || a.Version != "0.0.1" || a.BaseAudit != "REJECT" || !json.Valid(a.BaseAuditReason) {
			t.Fatalf("%+v", a)
		}
		c, _ = apply(t, testkit.SampleNote(t, "fastregister-changed"))
		if o := c.(notify.OrderChange); o.Kind != notify.OrderKindFastRegister || o.MiniAppID != "20218324729872" || o.AppName == "" {
			t.Fatalf("%+v", o)
		}
		c, _ = apply(t, testkit.SampleNote(t, "auth-granted"))
		g := c.(notify.AuthGrant)
		if g.AuthTime != 1516797623000 || g.At != g.AuthTime || g.ExpiresIn != 31536000 || len(g.SealedAuthToken) == 0 {
			t.Fatalf("%+v", g)
		}
		tok, err := testkit.Sealer(t).Open(g.SealedAuthToken, notify.TokenOwner(g.AppID, g.AuthAppID))
		if err != nil || tok != "202301BB0c4f2a9c1ff34b1f8f0d7ea6f4d2fX01" {
			t.Fatalf("token %q %v", tok, err)
		}
	})
	t.Run("ReasonAsString", func(t *testing.T) {
		n := testkit.SampleNote(t, "audit-rejected")
		n.BizContent = `{"mini_app_id":"1","base_audit_reason":"{\"memos\":[]}","promote_audit_reason":"plain words"}`
		c, err := apply(t, n)
		a := c.(notify.AuditChange)
		if err != nil || string(a.BaseAuditReason) != `{"memos":[]}` || string(a.PromoteAuditReason) != `"plain words"` {
			t.Fatalf("%s %s %v", a.BaseAuditReason, a.PromoteAuditReason, err)
		}
	})
	t.Run("NumbersAsStrings", func(t *testing.T) {
		n := testkit.SampleNote(t, "auth-granted")
		n.BizContent = strings.Replace(n.BizContent, `"auth_time":1516797623000`, `"auth_time":"1516797623000"`, 1)
		c, err := apply(t, n)
		if err != nil || c.(notify.AuthGrant).AuthTime != 1516797623000 {
			t.Fatalf("%v %v", c, err)
		}
	})
	for name, tc := range map[string]struct{ sample, biz string }{
		"ErrNotJSON":        {"audit-passed", "not json"},
		"ErrArray":          {"merchant-confirmed", `[{"order_no":"1"}]`},
		"ErrNoMiniAppID":    {"audit-passed", `{"mini_app_version":"1"}`},
		"ErrNoOrderNo":      {"merchant-confirmed", `{"status":"PROCESS"}`},
		"ErrNoAuthAppID":    {"appauth-cancelled", `{"user_id":"1"}`},
		"ErrGrantNoToken":   {"auth-granted", `{"detail":{"auth_app_id":"1"}}`},
		"ErrGrantWithError": {"auth-granted", `{"error":{"code":"x"},"detail":{"auth_app_id":"1"}}`},
	} {
		t.Run(name, func(t *testing.T) {
			n := testkit.SampleNote(t, tc.sample)
			n.BizContent, n.Secrets = redact.Secrets(tc.biz)
			if _, err := apply(t, n); notify.ErrorCode(err) != notify.EINVALID {
				t.Fatalf("err = %v", err)
			}
		})
	}
	t.Run("ErrGrantWithoutSealer", func(t *testing.T) {
		h, _ := notify.NewRegistry(notify.RegistryConfig{}).Handler(notify.MethodAuthGranted)
		if _, err := h(testkit.SampleNote(t, "auth-granted")); err == nil || !strings.Contains(err.Error(), "TOKEN_ENCRYPTION_KEY") {
			t.Fatalf("err = %v", err)
		}
	})
	t.Run("Unknown", func(t *testing.T) {
		if _, ok := reg.Handler("alipay.open.future"); ok {
			t.Fatal("a handler for an unknown method")
		}
		var none *notify.Registry
		if _, ok := none.Handler(notify.MethodAuditPassed); ok {
			t.Fatal("a nil registry has a handler")
		}
	})
}

func TestRegistry_Decide(t *testing.T) {
	t.Parallel()
	reg := notify.NewRegistry(notify.RegistryConfig{Sealer: testkit.Sealer(t), MaxClockSkew: time.Minute})
	t.Run("OK", func(t *testing.T) {
		d, err := reg.Decide(testkit.SampleNote(t, "audit-passed"))
		if err != nil || d.Change == nil || d.NotifyID == "" {
			t.Fatalf("%+v %v", d, err)
		}
	})
	t.Run("Unhandled", func(t *testing.T) {
		n := testkit.SampleNote(t, "audit-passed")
		n.Method = "alipay.open.future"
		if d, err := reg.Decide(n); err != nil || d.Change != nil || d.Status != notify.StatusUnhandled {
			t.Fatalf("%+v %v", d, err)
		}
	})
	t.Run("FailedUndecodable", func(t *testing.T) {
		n := testkit.SampleNote(t, "audit-passed")
		n.Failure = "biz_content is encrypted and app x has no ALIPAY_ENCRYPT_KEY"
		if d, err := reg.Decide(n); err != nil || d.Change != nil || d.Status != notify.StatusFailed || d.Error != n.Failure {
			t.Fatalf("%+v %v", d, err)
		}
	})
	t.Run("FailedUnusable", func(t *testing.T) {
		n := testkit.SampleNote(t, "audit-passed")
		n.BizContent = "not json"
		if d, err := reg.Decide(n); err != nil || d.Status != notify.StatusFailed || d.Error == "" {
			t.Fatalf("%+v %v", d, err)
		}
	})
	t.Run("ErrNoTokenKeyRefused", func(t *testing.T) {
		// A grant whose tokens cannot be sealed is refused (503 fail: Alipay
		// resends it), never acknowledged with its tokens thrown away.
		_, err := notify.NewRegistry(notify.RegistryConfig{}).Decide(testkit.SampleNote(t, "auth-granted"))
		if notify.ErrorCode(err) != notify.EUNAVAILABLE || notify.ErrorReason(err) != "token_key_missing" || !notify.Refused(err) {
			t.Fatalf("err = %v", err)
		}
	})
	t.Run("ErrAuthTimeAhead", func(t *testing.T) {
		// auth_time orders grants: one ahead of the clock is refused, or it
		// would make every later grant and cancellation stale.
		n := testkit.SampleNote(t, "auth-granted")
		n.ReceivedAt = time.UnixMilli(1516797623000).Add(-2 * time.Minute) // the sample's auth_time is 2 minutes ahead
		if _, err := reg.Decide(n); notify.ErrorCode(err) != notify.ETOOEARLY {
			t.Fatalf("err = %v", err)
		}
		n.ReceivedAt = time.UnixMilli(1516797623000)
		if _, err := reg.Decide(n); err != nil {
			t.Fatal(err)
		}
	})
}
