package notify_test

import (
	"encoding/json"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/alipay-notify-gateway/gateway/internal/notify"
	"github.com/alipay-notify-gateway/gateway/internal/samples"
	"github.com/alipay-notify-gateway/gateway/internal/testkit"
)

func TestRegistry_DecideEvents(t *testing.T) {
	t.Parallel()
	reg := notify.NewRegistry(notify.RegistryConfig{Sealer: testkit.Sealer(t)})
	want := map[string]string{
		"auth-granted": notify.EventAuthorizationGranted, "appauth-cancelled": notify.EventAuthorizationCancelled,
		"merchant-confirmed": notify.EventMiniAppOrderUpdated, "fastregister-changed": notify.EventMiniAppOrderUpdated,
		"audit-passed": notify.EventMiniAppAuditPassed, "audit-rejected": notify.EventMiniAppAuditRejected,
		"baseaudit-passed": notify.EventMiniAppBaseAuditPassed,
	}
	for _, s := range samples.All() {
		t.Run(s.Name, func(t *testing.T) {
			n := testkit.SampleNote(t, s.Name)
			n.ReceivedAt = time.Now()
			d, err := reg.Decide(n)
			if err != nil {
				t.Fatal(err)
			}
			if len(d.Events) != 2 || d.Events[0].Type != notify.EventNotificationReceived || d.Events[0].IfApplied ||
				d.Events[1].Type != want[s.Name] || !d.Events[1].IfApplied {
				t.Fatalf("%+v", d.Events)
			}
			if d.Events[0].Data != nil {
				t.Fatalf("a notification.received carries its own data: %s", d.Events[0].Data)
			}
			for _, ev := range d.Events[1:] {
				var m map[string]any
				if err := json.Unmarshal(ev.Data, &m); err != nil {
					t.Fatalf("%s: %s", ev.Type, ev.Data)
				}
				if strings.Contains(string(ev.Data), "202301BB0c4f2a9c1ff34b1f8f0d7ea6f4d2fX01") || strings.Contains(string(ev.Data), `"sign"`) {
					t.Fatalf("%s carries a token or the signature: %s", ev.Type, ev.Data)
				}
			}
		})
	}
	t.Run("Unhandled", func(t *testing.T) {
		d, err := reg.Decide(&notify.Notification{AppID: "a", NotifyID: "n", Method: "alipay.new.thing", UTCTimestamp: 5})
		if err != nil || len(d.Events) != 1 || d.Events[0].Type != notify.EventNotificationReceived || d.Events[0].OccurredAt.UnixMilli() != 5 {
			t.Fatalf("%+v %v", d, err)
		}
	})
}

func TestReceivedData(t *testing.T) {
	t.Parallel()
	var m struct {
		MsgMethod  string            `json:"msg_method"`
		BizContent any               `json:"biz_content"`
		Params     map[string]string `json:"params"`
		Status     string            `json:"status"`
	}
	t.Run("OK", func(t *testing.T) {
		data := notify.ReceivedData(notify.Received{Method: "m", BizContent: `{"k":"v"}`, Params: map[string]string{"sign": "x", "biz_content": "{}", "k": "v"},
			Status: notify.StatusUnhandled})
		if err := json.Unmarshal(data, &m); err != nil || m.BizContent.(map[string]any)["k"] != "v" || m.Params["k"] != "v" ||
			len(m.Params) != 1 || m.Status != "unhandled" || m.MsgMethod != "m" {
			t.Fatalf("%s %v", data, err)
		}
	})
	t.Run("NotJSON", func(t *testing.T) {
		data := notify.ReceivedData(notify.Received{BizContent: "not json\x00"})
		if err := json.Unmarshal(data, &m); err != nil || m.BizContent != "not json\uFFFD" {
			t.Fatalf("%s %v", data, err)
		}
	})
}

func TestCheckEndpoint(t *testing.T) {
	t.Parallel()
	str := func(s string) *string { return &s }
	for _, tc := range []struct {
		name string
		c    notify.EndpointChange
		ok   bool
	}{
		{"OK", notify.EndpointChange{URL: str("https://isv.example.com/hook?x=1")}, true},
		{"OKTypes", notify.EndpointChange{URL: str("http://127.0.0.1:3000/"), EventTypes: &[]string{"*", "mini_app.*", "authorization.granted"}}, true},
		{"OKUpdateWithoutURL", notify.EndpointChange{Enabled: new(bool)}, true},
		{"ErrNoURL", notify.EndpointChange{}, false},
		{"ErrScheme", notify.EndpointChange{URL: str("ws://example.com/")}, false},
		{"ErrRelative", notify.EndpointChange{URL: str("/hook")}, false},
		{"ErrCredentials", notify.EndpointChange{URL: str("https://user@example.com/")}, false},
		{"ErrFragment", notify.EndpointChange{URL: str("https://example.com/#x")}, false},
		{"ErrType", notify.EndpointChange{URL: str("https://example.com/"), EventTypes: &[]string{"mini_app.audit_failed"}}, false},
		{"ErrBarePrefix", notify.EndpointChange{URL: str("https://example.com/"), EventTypes: &[]string{"mini*"}}, false},
		{"ErrUnknownPrefix", notify.EndpointChange{URL: str("https://example.com/"), EventTypes: &[]string{"order.*"}}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := notify.CheckEndpoint(tc.c, tc.name != "OKUpdateWithoutURL")
			if (err == nil) != tc.ok || err != nil && notify.ErrorCode(err) != notify.EINVALID {
				t.Fatalf("%v", err)
			}
		})
	}
}

func TestBackoff(t *testing.T) {
	t.Parallel()
	r := rand.New(rand.NewPCG(1, 2))
	total, attempts := time.Duration(0), 0
	for a := 1; total < notify.DeliveryWindow; a++ {
		d := notify.Backoff(a, r)
		base := min(notify.RetryBase<<(a-1), notify.RetryCap)
		if a > 30 {
			base = notify.RetryCap
		}
		if d < time.Duration(float64(base)*(1-notify.RetryJitter)) || d > time.Duration(float64(base)*(1+notify.RetryJitter)) {
			t.Fatalf("attempt %d: %s, base %s", a, d, base)
		}
		total += d
		attempts = a
	}
	if attempts < 15 || attempts > 25 {
		t.Fatalf("%d attempts in the window", attempts)
	}
	t.Run("Schedule", func(t *testing.T) {
		now := time.Now()
		a := notify.Attempt{Attempt: 3}
		a.Schedule(now.Add(time.Minute), now, 30*time.Second)
		if a.Dead || !a.NextAt.Equal(now.Add(30*time.Second)) {
			t.Fatalf("%+v", a)
		}
		a.Schedule(now.Add(time.Minute), now, 2*time.Minute)
		if !a.Dead {
			t.Fatalf("past the window, not dead: %+v", a)
		}
		ok := notify.Attempt{OK: true}
		ok.Schedule(now, now, time.Hour)
		if ok.Dead || !ok.NextAt.IsZero() {
			t.Fatalf("%+v", ok)
		}
	})
}
