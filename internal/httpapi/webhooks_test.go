package httpapi_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/alipay-notify-gateway/gateway/internal/httpapi"
	"github.com/alipay-notify-gateway/gateway/internal/notify"
	"github.com/alipay-notify-gateway/gateway/internal/pgtest"
	"github.com/alipay-notify-gateway/gateway/internal/samples"
	"github.com/alipay-notify-gateway/gateway/internal/testkit"
	"github.com/alipay-notify-gateway/gateway/internal/view"
	"github.com/alipay-notify-gateway/gateway/internal/webhook"
)

// call sends body (JSON, when not nil) to the ops API and decodes the
// answer into v (when not nil).
func (g *gateway) call(t testing.TB, method, path string, body, v any) int {
	t.Helper()
	var rd *bytes.Reader
	if s, ok := body.(string); ok {
		rd = bytes.NewReader([]byte(s))
	} else {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, _ := http.NewRequest(method, g.srv.URL+path, rd)
	req.Header.Set("Authorization", "Bearer "+opsToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if v != nil && resp.StatusCode != http.StatusNoContent {
		if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
			t.Fatalf("%s %s: %v", method, path, err)
		}
	}
	return resp.StatusCode
}

func newWebhookGateway(t *testing.T) *gateway {
	db := pgtest.New(t)
	return startGateway(t, db, rig{cfg: httpapi.Config{Webhooks: &webhook.Admin{AdminStore: db}}})
}

func TestOps_Events(t *testing.T) {
	t.Parallel()
	g := newWebhookGateway(t)
	for _, s := range samples.All() {
		g.mustAccept(t, testkit.Body(t, testkit.Sample(t, s.Name, testkit.AppID), testkit.AlipayKey()))
	}
	types := map[string]int{}
	cursor := ""
	for i := 0; ; i++ {
		var page view.EventPage
		code := g.call(t, "GET", "/v1/events?limit=3&after="+cursor, nil, &page)
		if code != 200 {
			t.Fatalf("%d", code)
		}
		for _, e := range page.Items {
			types[e.Type]++
			if !strings.HasPrefix(e.ID, "evt_") || e.AppID != testkit.AppID || e.NotifyID == "" {
				t.Fatalf("%+v", e)
			}
		}
		cursor = page.Next
		if !page.More && (len(page.Items) == 0 || i > 20) {
			break
		}
	}
	// Seven notifications; each applied change makes its event.
	want := map[string]int{
		notify.EventNotificationReceived: len(samples.All()), notify.EventAuthorizationGranted: 1,
		notify.EventAuthorizationCancelled: 1, notify.EventMiniAppOrderUpdated: 2, notify.EventMiniAppAuditPassed: 1,
		notify.EventMiniAppAuditRejected: 1, notify.EventMiniAppBaseAuditPassed: 1,
	}
	for k, n := range want {
		if types[k] != n {
			t.Errorf("%s: %d, want %d (%v)", k, types[k], n, types)
		}
	}
	t.Run("Filter", func(t *testing.T) {
		var page view.EventPage
		if code := g.call(t, "GET", "/v1/events?type=authorization.*", nil, &page); code != 200 || len(page.Items) != 2 {
			t.Fatalf("%d %+v", code, page)
		}
	})
	t.Run("ErrBadType", func(t *testing.T) {
		var e map[string]map[string]string
		if code := g.call(t, "GET", "/v1/events?type=nope", nil, &e); code != 400 || e["error"]["code"] != notify.EINVALID {
			t.Fatalf("%d %v", code, e)
		}
	})
	t.Run("ErrBadCursor", func(t *testing.T) {
		if code := g.call(t, "GET", "/v1/events?after=zzz", nil, nil); code != 400 {
			t.Fatalf("%d", code)
		}
	})
}

func TestOps_Endpoints(t *testing.T) {
	t.Parallel()
	g := newWebhookGateway(t)
	var ep notify.Endpoint
	t.Run("OK", func(t *testing.T) {
		code := g.call(t, "POST", "/v1/endpoints", map[string]any{"url": "http://127.0.0.1:9/hook", "event_types": []string{"mini_app.*"}, "description": "test"}, &ep)
		if code != 201 || !strings.HasPrefix(ep.Secret, "whsec_") || ep.ID == 0 || !ep.Enabled || ep.EventTypes[0] != "mini_app.*" {
			t.Fatalf("%d %+v", code, ep)
		}
		var got notify.Endpoint
		if code := g.call(t, "GET", fmt.Sprintf("/v1/endpoints/%d", ep.ID), nil, &got); code != 200 || got.Secret != "" || got.URL != ep.URL {
			t.Fatalf("%d %+v", code, got)
		}
		var list struct{ Items []notify.Endpoint }
		if code := g.call(t, "GET", "/v1/endpoints", nil, &list); code != 200 || len(list.Items) != 1 || list.Items[0].Secret != "" {
			t.Fatalf("%d %+v", code, list)
		}
	})
	t.Run("Update", func(t *testing.T) {
		var got notify.Endpoint
		if code := g.call(t, "PATCH", fmt.Sprintf("/v1/endpoints/%d", ep.ID), map[string]any{"enabled": false}, &got); code != 200 || got.Enabled || got.DisabledReason == "" {
			t.Fatalf("%d %+v", code, got)
		}
		if code := g.call(t, "PATCH", fmt.Sprintf("/v1/endpoints/%d", ep.ID), map[string]any{"enabled": true, "event_types": []string{}}, &got); code != 200 || !got.Enabled || got.DisabledReason != "" || len(got.EventTypes) != 0 || got.URL != ep.URL {
			t.Fatalf("%d %+v", code, got)
		}
	})
	t.Run("Rotate", func(t *testing.T) {
		var got notify.Endpoint
		if code := g.call(t, "POST", fmt.Sprintf("/v1/endpoints/%d/rotate-secret", ep.ID), nil, &got); code != 200 || got.Secret == ep.Secret || !strings.HasPrefix(got.Secret, "whsec_") || got.PreviousUntil == nil {
			t.Fatalf("%d %+v", code, got)
		}
	})
	t.Run("ReplayAndDeliveries", func(t *testing.T) {
		g.mustAccept(t, testkit.Body(t, testkit.Sample(t, "audit-passed", testkit.AppID), testkit.AlipayKey()))
		var out map[string]any
		deadline := time.Now().Add(5 * time.Second)
		for {
			if code := g.call(t, "POST", fmt.Sprintf("/v1/endpoints/%d/replay", ep.ID), map[string]any{"since": time.Now().Add(-time.Hour)}, &out); code != 200 {
				t.Fatalf("%d %v", code, out)
			}
			if out["queued"].(float64) == 2 || time.Now().After(deadline) {
				break
			}
			time.Sleep(20 * time.Millisecond) // the feed's horizon
		}
		var page struct {
			Items []view.Delivery
		}
		if code := g.call(t, "GET", fmt.Sprintf("/v1/endpoints/%d/deliveries?status=pending", ep.ID), nil, &page); code != 200 || len(page.Items) != 2 {
			t.Fatalf("%d %+v", code, page)
		}
		var d view.Delivery
		if code := g.call(t, "GET", fmt.Sprintf("/v1/deliveries/%d", page.Items[0].ID), nil, &d); code != 200 || d.EventID == "" || d.Attempts != 0 {
			t.Fatalf("%d %+v", code, d)
		}
		if code := g.call(t, "POST", fmt.Sprintf("/v1/deliveries/%d/retry", page.Items[0].ID), nil, &d); code != 200 || d.Status != "pending" {
			t.Fatalf("%d %+v", code, d)
		}
	})
	t.Run("Delete", func(t *testing.T) {
		if code := g.call(t, "DELETE", fmt.Sprintf("/v1/endpoints/%d", ep.ID), nil, nil); code != 204 {
			t.Fatalf("%d", code)
		}
		if code := g.call(t, "GET", fmt.Sprintf("/v1/endpoints/%d", ep.ID), nil, nil); code != 404 {
			t.Fatalf("%d", code)
		}
	})
	for _, tc := range []struct {
		name, method, path string
		body               any
		code               int
		errCode            string
	}{
		{"ErrScheme", "POST", "/v1/endpoints", map[string]any{"url": "ftp://example.com/"}, 400, notify.EINVALID},
		{"ErrUnresolvable", "POST", "/v1/endpoints", map[string]any{"url": "https://nowhere.invalid/"}, 400, notify.EINVALID},
		{"ErrNoURL", "POST", "/v1/endpoints", map[string]any{}, 400, notify.EINVALID},
		{"ErrUnknownField", "POST", "/v1/endpoints", map[string]any{"url": "http://127.0.0.1/", "secret": "x"}, 400, notify.EINVALID},
		{"ErrEventType", "POST", "/v1/endpoints", map[string]any{"url": "http://127.0.0.1/", "event_types": []string{"x.y"}}, 400, notify.EINVALID},
		{"ErrNotFound", "GET", "/v1/endpoints/999999", nil, 404, notify.ENOTFOUND},
		{"ErrBadID", "GET", "/v1/endpoints/abc", nil, 400, notify.EINVALID},
		{"ErrDeliveryNotFound", "POST", "/v1/deliveries/999999/retry", nil, 404, notify.ENOTFOUND},
		{"ErrReplayNoSince", "POST", "/v1/endpoints/1/replay", map[string]any{}, 400, notify.EINVALID},
		{"ErrReplayNotFound", "POST", "/v1/endpoints/999999/replay", map[string]any{"since": time.Now()}, 404, notify.ENOTFOUND},
		{"ErrDeliveriesStatus", "GET", "/v1/endpoints/1/deliveries?status=nope", nil, 400, notify.EINVALID},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var e struct {
				Error struct{ Code, Message string }
			}
			body := tc.body
			if body == nil {
				body = ""
			}
			if code := g.call(t, tc.method, tc.path, body, &e); code != tc.code || e.Error.Code != tc.errCode || e.Error.Message == "" {
				t.Fatalf("%d %+v", code, e)
			}
		})
	}
	t.Run("ErrNoToken", func(t *testing.T) {
		if code := g.get(t, "GET", "/v1/endpoints", "", nil); code != 401 {
			t.Fatalf("%d", code)
		}
	})
}
