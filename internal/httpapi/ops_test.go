package httpapi_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"sort"
	"strings"
	"testing"

	"github.com/go-chi/chi/v5"

	"github.com/alipay-notify-gateway/gateway/internal/alipay"
	"github.com/alipay-notify-gateway/gateway/internal/batchsend"
	"github.com/alipay-notify-gateway/gateway/internal/httpapi"
	"github.com/alipay-notify-gateway/gateway/internal/notify"
	"github.com/alipay-notify-gateway/gateway/internal/outbound"
	"github.com/alipay-notify-gateway/gateway/internal/pgtest"
	"github.com/alipay-notify-gateway/gateway/internal/postgres"
	"github.com/alipay-notify-gateway/gateway/internal/reconcile"
	"github.com/alipay-notify-gateway/gateway/internal/samples"
	"github.com/alipay-notify-gateway/gateway/internal/testkit"
	"github.com/alipay-notify-gateway/gateway/internal/view"
	"github.com/alipay-notify-gateway/gateway/internal/webhook"
)

// get calls the ops API and decodes the JSON answer into v (when not nil).
func (g *gateway) get(t testing.TB, method, path, token string, v any) int {
	t.Helper()
	req, _ := http.NewRequest(method, g.srv.URL+path, nil)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if v != nil {
		if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
			t.Fatalf("%s %s: %v", method, path, err)
		}
	}
	return resp.StatusCode
}

func (g *gateway) mustGet(t testing.TB, path string, v any) {
	t.Helper()
	if code := g.get(t, "GET", path, opsToken, v); code != 200 {
		t.Fatalf("GET %s: %d", path, code)
	}
}

func TestOps_SevenKinds(t *testing.T) {
	t.Parallel()
	g := newGateway(t)
	ids := map[string]string{}
	for _, s := range samples.All() {
		f := testkit.Sample(t, s.Name, testkit.AppID)
		ids[s.Name] = f["notify_id"]
		g.mustAccept(t, testkit.Body(t, f, testkit.AlipayKey()))
	}
	var n view.StoredNotification
	g.mustGet(t, "/v1/notifications/"+ids["audit-rejected"], &n)
	var biz map[string]any
	if n.Status != "applied" || n.DeliveryCount != 1 || n.MsgMethod != notify.MethodAuditRejected || json.Unmarshal(n.BizContent, &biz) != nil || biz["mini_app_version"] != "0.0.1" {
		t.Fatalf("%+v", n)
	}
	var a view.Authorization
	g.mustGet(t, "/v1/authorizations/2013072300101234", &a)
	if a.Status != "authorized" || !a.HasToken || a.UserID != "2088100000034011" {
		t.Fatalf("authorization %+v", a)
	}
	var grant map[string]any
	g.mustGet(t, "/v1/notifications/"+ids["auth-granted"], &grant)
	if b, _ := json.Marshal(grant); strings.Contains(string(b), "202301BB0c4f2a9c1ff34b1f8f0d7ea6f4d2fX01") {
		t.Fatal("the API returned a token")
	}
	var o view.MiniAppOrder
	g.mustGet(t, "/v1/mini-app-orders/2394834823942343", &o)
	if o.Kind != "merchant_confirmed" || o.Status != "PROCESS" || o.MiniAppID != "20218324729872" || len(o.History) != 1 {
		t.Fatalf("order %+v", o)
	}
	g.mustGet(t, "/v1/mini-app-orders/2394834823942344", &o)
	if o.Kind != "fast_register" || o.Status != "CREATE_MINI_APP_SUCCESS" || o.AppName != "张三的试用小程序" {
		t.Fatalf("order %+v", o)
	}
	var m view.MiniApp
	g.mustGet(t, "/v1/mini-apps/2014072300007148", &m)
	// All three audit samples share utc_timestamp; ties go by notify_id, so
	// the app-level state is the one with the greatest notify_id.
	if len(m.Versions) != 2 || m.Versions[0].MiniAppVersion == "" {
		t.Fatalf("mini-app %+v", m)
	}
	var h struct{ Items []view.AuditEntry }
	g.mustGet(t, "/v1/mini-apps/2014072300007148/audit-history", &h)
	if len(h.Items) != 3 {
		t.Fatalf("history %+v", h)
	}
}

func TestOps_OutOfOrder(t *testing.T) {
	t.Parallel()
	g := newGateway(t)
	send := func(method, biz string, ts int64) string {
		f := testkit.Form(testkit.AppID, method, biz, ts)
		g.mustAccept(t, testkit.Body(t, f, testkit.AlipayKey()))
		return f["notify_id"]
	}
	statusOf := func(id string) notify.Status {
		var n view.StoredNotification
		g.mustGet(t, "/v1/notifications/"+id, &n)
		return n.Status
	}
	t.Run("Audit", func(t *testing.T) {
		send(notify.MethodAuditPassed, `{"mini_app_id":"ooo","mini_app_version":"2"}`, 2000)
		old := send(notify.MethodAuditRejected, `{"mini_app_id":"ooo","mini_app_version":"2"}`, 1000)
		var m view.MiniApp
		g.mustGet(t, "/v1/mini-apps/ooo", &m)
		if m.AuditStatus != "audit_passed" || statusOf(old) != "stale" {
			t.Fatalf("%+v", m)
		}
	})
	t.Run("Order", func(t *testing.T) {
		send(notify.MethodMerchantConfirmed, `{"order_no":"ooo","status":"AGREED"}`, 2000)
		old := send(notify.MethodMerchantConfirmed, `{"order_no":"ooo","status":"PROCESS"}`, 1000)
		var o view.MiniAppOrder
		g.mustGet(t, "/v1/mini-app-orders/ooo", &o)
		if o.Status != "AGREED" || statusOf(old) != "stale" {
			t.Fatalf("%+v", o)
		}
	})
	t.Run("GrantCancel", func(t *testing.T) {
		send(notify.MethodAuthCancelled, `{"auth_app_id":"ooo"}`, 2000)
		f := testkit.Sample(t, "auth-granted", testkit.AppID)
		f["biz_content"] = strings.Replace(strings.Replace(f["biz_content"], "2013072300101234", "ooo", 1), "1516797623000", "1000", 1)
		g.mustAccept(t, testkit.Body(t, f, testkit.AlipayKey()))
		var a view.Authorization
		g.mustGet(t, "/v1/authorizations/ooo", &a)
		if a.Status != "cancelled" || statusOf(f["notify_id"]) != "stale" {
			t.Fatalf("%+v", a)
		}
	})
}

func TestOps_Storm(t *testing.T) {
	t.Parallel()
	g := newGateway(t)
	f := testkit.Sample(t, "baseaudit-passed", testkit.AppID)
	body := testkit.Body(t, f, testkit.AlipayKey())
	done := make(chan int, 32)
	for range 32 {
		go func() { c, _ := g.post(t, body); done <- c }()
	}
	for range 32 {
		if c := <-done; c != 200 {
			t.Fatalf("got %d", c)
		}
	}
	var n view.StoredNotification
	g.mustGet(t, "/v1/notifications/"+f["notify_id"], &n)
	var h struct{ Items []view.AuditEntry }
	g.mustGet(t, "/v1/mini-apps/2014072300007148/audit-history", &h)
	if n.DeliveryCount != 32 || n.Status != "applied" || len(h.Items) != 1 {
		t.Fatalf("%+v, %d history entries", n, len(h.Items))
	}
}

func TestOps_Reprocess(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	url := pgtest.NewSchema(t)
	open := func() *postgres.DB {
		db, err := postgres.Open(ctx, postgres.Config{URL: url})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(db.Close)
		if err := db.Migrate(ctx); err != nil {
			t.Fatal(err)
		}
		return db
	}
	// Before: an old release whose registry has no handlers, and no AES key.
	before := startGateway(t, open(), rig{registry: &notify.Registry{}})
	aesKey := []byte("fedcba9876543210")
	after := startGateway(t, open(), rig{certEncryptKey: aesKey})

	unhandled := testkit.Sample(t, "audit-passed", testkit.AppID)
	before.mustAccept(t, testkit.Body(t, unhandled, testkit.AlipayKey()))
	encrypted := testkit.Sample(t, "merchant-confirmed", testkit.CertAppID)
	encrypted["encrypt_type"] = "AES"
	encrypted["biz_content"], _ = alipay.EncryptBiz(aesKey, encrypted["biz_content"])
	before.mustAccept(t, testkit.Body(t, encrypted, testkit.PKI().Alipay.Key))
	notJSON := testkit.Form(testkit.AppID, notify.MethodAuditPassed, "not json", 1)
	before.mustAccept(t, testkit.Body(t, notJSON, testkit.AlipayKey()))

	var n view.StoredNotification
	before.mustGet(t, "/v1/notifications/"+unhandled["notify_id"], &n)
	if n.Status != "unhandled" {
		t.Fatalf("%+v", n)
	}
	before.mustGet(t, "/v1/notifications/"+encrypted["notify_id"], &n)
	if n.Status != "failed" || !strings.Contains(n.Error, "ALIPAY_ENCRYPT_KEY") {
		t.Fatalf("%+v", n)
	}
	var failed struct{ Items []view.StoredNotification }
	before.mustGet(t, "/v1/notifications?status=failed", &failed)
	if len(failed.Items) != 1 { // the non-JSON one is unhandled by the old release
		t.Fatalf("failed list %+v", failed)
	}

	for _, id := range []string{unhandled["notify_id"], encrypted["notify_id"]} {
		for range 2 { // idempotent
			if code := after.get(t, "POST", "/v1/notifications/"+id+"/reprocess", opsToken, &n); code != 200 || n.Status != "applied" {
				t.Fatalf("reprocess %s: %d %+v", id, code, n)
			}
		}
	}
	var o view.MiniAppOrder
	after.mustGet(t, "/v1/mini-app-orders/2394834823942343", &o)
	if o.Status != "PROCESS" || len(o.History) != 1 {
		t.Fatalf("%+v", o)
	}
	if code := after.get(t, "POST", "/v1/notifications/"+notJSON["notify_id"]+"/reprocess", opsToken, &n); code != 200 || n.Status != "failed" {
		t.Fatalf("%d %+v", code, n)
	}
	var e struct{ Error struct{ Code string } }
	if code := after.get(t, "POST", "/v1/notifications/nope/reprocess", opsToken, &e); code != 404 || e.Error.Code != "not_found" {
		t.Fatalf("%d %+v", code, e)
	}
}

func TestOps_Errors(t *testing.T) {
	t.Parallel()
	g := newGateway(t)
	var e struct {
		Error struct{ Code, Message string }
	}
	for name, tc := range map[string]struct {
		path, token string
		code        int
		errCode     string
	}{
		"NoToken":        {"/v1/notifications", "", 401, "unauthorized"},
		"WrongToken":     {"/v1/notifications", "nope", 401, "unauthorized"},
		"PrefixOfToken":  {"/v1/notifications", opsToken[:5], 401, "unauthorized"},
		"UnknownNotify":  {"/v1/notifications/nope", opsToken, 404, "not_found"},
		"UnknownAuth":    {"/v1/authorizations/nope", opsToken, 404, "not_found"},
		"UnknownMiniApp": {"/v1/mini-apps/nope", opsToken, 404, "not_found"},
		"UnknownHistory": {"/v1/mini-apps/nope/audit-history", opsToken, 404, "not_found"},
		"UnknownOrder":   {"/v1/mini-app-orders/nope", opsToken, 404, "not_found"},
		"BadLimit":       {"/v1/notifications?limit=0", opsToken, 400, "invalid"},
		"LimitTooLarge":  {"/v1/notifications?limit=501", opsToken, 400, "invalid"},
		"BadStatus":      {"/v1/notifications?status=done", opsToken, 400, "invalid"},
		"BadSince":       {"/v1/notifications?since=yesterday", opsToken, 400, "invalid"},
		"BadCursor":      {"/v1/notifications?cursor=%21%21", opsToken, 400, "invalid"},
		"UnknownParam":   {"/v1/notifications?stauts=failed", opsToken, 400, "invalid"},
		"BadKind":        {"/v1/mini-app-orders?kind=x", opsToken, 400, "invalid"},
		"BadAuthStatus":  {"/v1/authorizations?status=x", opsToken, 400, "invalid"},
		"RepeatedParam":  {"/v1/notifications?limit=1&limit=2", opsToken, 400, "invalid"},
	} {
		t.Run(name, func(t *testing.T) {
			if code := g.get(t, "GET", tc.path, tc.token, &e); code != tc.code || e.Error.Code != tc.errCode || e.Error.Message == "" {
				t.Fatalf("%d %+v", code, e)
			}
		})
	}
}

func TestOps_ListAndCursor(t *testing.T) {
	t.Parallel()
	g := newGateway(t)
	want := map[string]bool{}
	for i := range 23 {
		method := notify.MethodAuditPassed
		if i%3 == 0 {
			method = "alipay.open.other"
		}
		f := testkit.Form(testkit.AppID, method, fmt.Sprintf(`{"mini_app_id":"list-%d"}`, i), int64(i+1))
		g.mustAccept(t, testkit.Body(t, f, testkit.AlipayKey()))
		want[f["notify_id"]] = method == notify.MethodAuditPassed
	}
	walk := func(query string, limit int) []string {
		var ids []string
		cursor := ""
		for pages := 0; pages < 50; pages++ {
			var p struct {
				Items      []view.StoredNotification
				NextCursor string `json:"next_cursor"`
			}
			q := url.Values{"limit": {fmt.Sprint(limit)}}
			if cursor != "" {
				q.Set("cursor", cursor)
			}
			g.mustGet(t, "/v1/notifications?"+q.Encode()+query, &p)
			for i, n := range p.Items {
				ids = append(ids, n.NotifyID)
				if i > 0 && p.Items[i-1].ReceivedAt.Before(n.ReceivedAt) {
					t.Fatal("not newest first")
				}
			}
			if p.NextCursor == "" {
				return ids
			}
			cursor = p.NextCursor
		}
		t.Fatal("cursor never ended")
		return nil
	}
	t.Run("EveryRowOnce", func(t *testing.T) {
		ids := walk("", 5)
		seen := map[string]bool{}
		for _, id := range ids {
			if seen[id] {
				t.Fatalf("%s twice", id)
			}
			seen[id] = true
		}
		if len(ids) != 23 {
			t.Fatalf("%d rows", len(ids))
		}
	})
	t.Run("Filter", func(t *testing.T) {
		ids := walk("&msg_method="+notify.MethodAuditPassed+"&status=applied&app_id="+testkit.AppID, 4)
		n := 0
		for _, ok := range want {
			if ok {
				n++
			}
		}
		if len(ids) != n {
			t.Fatalf("%d rows, want %d", len(ids), n)
		}
		for _, id := range ids {
			if !want[id] {
				t.Fatalf("%s does not match the filter", id)
			}
		}
	})
	t.Run("TimeWindow", func(t *testing.T) {
		if ids := walk("&until=2000-01-01T00:00:00Z", 10); len(ids) != 0 {
			t.Fatalf("%d rows before 2000", len(ids))
		}
		if ids := walk("&since=2000-01-01T00:00:00Z", 10); len(ids) != 23 {
			t.Fatalf("%d rows since 2000", len(ids))
		}
	})
	t.Run("Orders", func(t *testing.T) {
		for i := range 7 {
			g.mustAccept(t, testkit.Body(t, testkit.Form(testkit.AppID, notify.MethodMerchantConfirmed, fmt.Sprintf(`{"order_no":"o-%d","out_order_no":"out-%d","status":"PROCESS"}`, i, i%2), 1), testkit.AlipayKey()))
		}
		var all []string
		cursor := ""
		for {
			var p struct {
				Items      []view.MiniAppOrder
				NextCursor string `json:"next_cursor"`
			}
			g.mustGet(t, "/v1/mini-app-orders?limit=3&kind=merchant_confirmed&cursor="+cursor, &p)
			for _, o := range p.Items {
				all = append(all, o.OrderNo)
			}
			if cursor = p.NextCursor; cursor == "" {
				break
			}
		}
		if len(all) != 7 || !sort.StringsAreSorted(all) {
			t.Fatalf("%v", all)
		}
		var p struct{ Items []view.MiniAppOrder }
		g.mustGet(t, "/v1/mini-app-orders?out_order_no=out-1", &p)
		if len(p.Items) != 3 {
			t.Fatalf("%d orders with out-1", len(p.Items))
		}
	})
	t.Run("Authorizations", func(t *testing.T) {
		g.mustAccept(t, testkit.Body(t, testkit.Form(testkit.AppID, notify.MethodAuthCancelled, `{"auth_app_id":"a1"}`, 1), testkit.AlipayKey()))
		var p struct{ Items []view.Authorization }
		g.mustGet(t, "/v1/authorizations?status=cancelled", &p)
		if len(p.Items) != 1 || p.Items[0].AuthAppID != "a1" {
			t.Fatalf("%+v", p)
		}
		g.mustGet(t, "/v1/authorizations?status=authorized", &p)
		if len(p.Items) != 0 {
			t.Fatalf("%+v", p)
		}
	})
}

// TestOpenAPI_Routes checks that every route the router serves is in the
// OpenAPI document, and the other way round.
func TestOpenAPI_Routes(t *testing.T) {
	t.Parallel()
	g := newGateway(t)
	var doc struct {
		Paths map[string]map[string]any `json:"paths"`
	}
	if code := g.get(t, "GET", "/v1/openapi.json", "", &doc); code != 200 {
		t.Fatalf("openapi.json: %d", code)
	}
	documented := map[string]bool{}
	for path, ops := range doc.Paths {
		for method := range ops {
			documented[strings.ToUpper(method)+" "+path] = true
		}
	}
	routed := map[string]bool{}
	h := httpapi.New(httpapi.Config{Outbound: &outbound.Service{}, Webhooks: &webhook.Admin{}, Reconcile: &reconcile.Reconciler{}, Batches: &batchsend.Admin{}})
	err := chi.Walk(h.(chi.Routes), func(method, route string, _ http.Handler, _ ...func(http.Handler) http.Handler) error {
		if strings.HasPrefix(route, "/v1/") {
			routed[method+" "+route] = true
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for r := range routed {
		if !documented[r] {
			t.Errorf("%s is routed but not documented", r)
		}
	}
	for d := range documented {
		if !routed[d] {
			t.Errorf("%s is documented but not routed", d)
		}
	}
}
