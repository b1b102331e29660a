package httpapi_test

import (
	"context"
	"io"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/alipay-notify-gateway/gateway/internal/alipay"
	"github.com/alipay-notify-gateway/gateway/internal/metrics"
	"github.com/alipay-notify-gateway/gateway/internal/notify"
	"github.com/alipay-notify-gateway/gateway/internal/pgtest"
	"github.com/alipay-notify-gateway/gateway/internal/postgres"
	"github.com/alipay-notify-gateway/gateway/internal/samples"
	"github.com/alipay-notify-gateway/gateway/internal/testkit"
)

func TestNotify_Samples(t *testing.T) {
	t.Parallel()
	g := newGateway(t)
	for _, s := range samples.All() {
		t.Run("KeyMode/"+s.Name, func(t *testing.T) {
			f := testkit.Sample(t, s.Name, testkit.AppID)
			body := testkit.Body(t, f, testkit.AlipayKey())
			g.mustAccept(t, body)
			g.mustAccept(t, body) // a resend
			st, _, dc := g.status(t, testkit.AppID, f["notify_id"])
			if st != string(notify.StatusApplied) || dc != 2 {
				t.Fatalf("status %s, delivery_count %d", st, dc)
			}
		})
		t.Run("CertMode/"+s.Name, func(t *testing.T) {
			f := testkit.Sample(t, s.Name, testkit.CertAppID)
			f["alipay_cert_sn"] = alipay.CertSN(testkit.PKI().Alipay.Cert)
			body := testkit.Body(t, f, testkit.PKI().Alipay.Key)
			g.mustAccept(t, body)
			g.mustAccept(t, body)
			if _, _, dc := g.status(t, testkit.CertAppID, f["notify_id"]); dc != 2 {
				t.Fatalf("delivery_count %d", dc)
			}
		})
	}
	if n := g.count(t, "notifications"); n != 2*len(samples.All()) {
		t.Fatalf("%d rows, want %d", n, 2*len(samples.All()))
	}
}

func TestNotify_Accepted(t *testing.T) {
	t.Parallel()
	g := newGateway(t)
	t.Run("V2", func(t *testing.T) {
		f := testkit.Sample(t, "audit-passed", testkit.AppID)
		g.mustAccept(t, testkit.Sign(t, f, testkit.AlipayKey(), alipay.FormV2).Encode())
	})
	t.Run("EmptyExtraParameter", func(t *testing.T) {
		f := testkit.Sample(t, "audit-passed", testkit.AppID)
		f["extra"] = ""
		g.mustAccept(t, testkit.Body(t, f, testkit.AlipayKey()))
	})
	t.Run("RotatedCert", func(t *testing.T) {
		f := testkit.Sample(t, "audit-passed", testkit.CertAppID)
		f["alipay_cert_sn"] = alipay.CertSN(testkit.PKI().Rotated.Cert)
		g.mustAccept(t, testkit.Body(t, f, testkit.PKI().Rotated.Key))
	})
	t.Run("CertWithoutSN", func(t *testing.T) {
		g.mustAccept(t, testkit.Body(t, testkit.Sample(t, "audit-passed", testkit.CertAppID), testkit.PKI().Rotated.Key))
	})
	t.Run("UnhandledMethod", func(t *testing.T) {
		f := testkit.Form(testkit.AppID, "alipay.open.some.future.method", `{"x":1}`, 1)
		g.mustAccept(t, testkit.Body(t, f, testkit.AlipayKey()))
		if st, _, _ := g.status(t, testkit.AppID, f["notify_id"]); st != "unhandled" {
			t.Fatalf("status %s", st)
		}
	})
	t.Run("SignPlusAsSpace", func(t *testing.T) {
		for i := 0; i < 50; i++ {
			f := testkit.Sample(t, "audit-passed", testkit.AppID)
			body := testkit.Body(t, f, testkit.AlipayKey())
			s, _ := alipay.ParseForm([]byte(body))
			if !strings.Contains(s["sign"], "+") {
				continue
			}
			// A sender that did not URL-encode sign: its '+' arrive raw.
			raw := strings.Replace(body, "sign="+escape(s["sign"]), "sign="+s["sign"], 1)
			g.mustAccept(t, raw)
			return
		}
		t.Fatal("no signature with '+'")
	})
}

func escape(s string) string {
	return strings.NewReplacer("+", "%2B", "/", "%2F", "=", "%3D").Replace(s)
}

func TestNotify_Refused(t *testing.T) {
	t.Parallel()
	g := newGateway(t)
	good := func() alipay.Form { return testkit.Sample(t, "audit-rejected", testkit.AppID) }
	resign := func(mut func(alipay.Form)) string {
		s, _ := alipay.ParseForm([]byte(testkit.Body(t, good(), testkit.AlipayKey())))
		mut(s)
		return s.Encode()
	}
	sha1 := func() string {
		f := good()
		f["sign_type"] = "RSA"
		return testkit.SignSHA1(t, f, testkit.AlipayKey(), alipay.FormV1).Encode()
	}
	certFor := func(c interface{}, sn string) string {
		f := testkit.Sample(t, "audit-rejected", testkit.CertAppID)
		f["alipay_cert_sn"] = sn
		return testkit.Body(t, f, testkit.PKI().Rogue.Key)
	}
	cases := []struct {
		name string
		body string
		code int
	}{
		{"TamperedBiz", resign(func(f alipay.Form) { f["biz_content"] = strings.Replace(f["biz_content"], "REJECT", "PASS", 1) }), 403},
		{"TamperedTimestamp", resign(func(f alipay.Form) { f["utc_timestamp"] = "1516797622753" }), 403},
		{"AddedParameter", resign(func(f alipay.Form) { f["added"] = "1" }), 403},
		{"NoSign", resign(func(f alipay.Form) { delete(f, "sign") }), 403},
		{"GarbageSign", resign(func(f alipay.Form) { f["sign"] = "garbage!!" }), 403},
		{"OtherKey", testkit.Body(t, good(), testkit.OtherKey()), 403},
		{"SHA1", sha1(), 403},
		{"UnknownApp", resign(func(f alipay.Form) { f["app_id"] = "2099000000000000" }), 403},
		{"UnknownCertSN", certFor(nil, "0123456789abcdef0123456789abcdef"), 403},
		{"RogueCertSN", certFor(nil, alipay.CertSN(testkit.PKI().Rogue.Cert)), 403},
		{"EmptyBody", "", 400},
		{"NotAForm", "%%%", 400},
		{"NoNotifyID", resign(func(f alipay.Form) { delete(f, "notify_id") }), 400},
		{"Oversized", "a=" + strings.Repeat("x", 17<<10), 413},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			code, reply := g.post(t, tc.body)
			if code != tc.code || reply != "fail" {
				t.Fatalf("got %d %q, want %d fail", code, reply, tc.code)
			}
		})
	}
	t.Run("SignInQueryIgnored", func(t *testing.T) {
		s, _ := alipay.ParseForm([]byte(testkit.Body(t, good(), testkit.AlipayKey())))
		sig := s["sign"]
		delete(s, "sign")
		resp, err := http.Post(g.srv.URL+"/alipay/notify?sign="+escape(sig), "application/x-www-form-urlencoded", strings.NewReader(s.Encode()))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 403 {
			t.Fatalf("got %d", resp.StatusCode)
		}
	})
	if n := g.stateRows(t); n != 0 {
		t.Fatalf("refused notifications wrote %d rows", n)
	}
}

func TestNotify_Concurrent(t *testing.T) {
	t.Parallel()
	g := newGateway(t)
	body := testkit.Body(t, testkit.Sample(t, "merchant-confirmed", testkit.AppID), testkit.AlipayKey())
	const n = 32
	codes := make([]int, n)
	testkit.Concurrently(n, func(i int) { codes[i], _ = g.post(t, body) })
	for i, c := range codes {
		if c != 200 {
			t.Fatalf("delivery %d got %d", i, c)
		}
	}
	var dc, events int
	if err := g.db.Pool.QueryRow(context.Background(), "SELECT delivery_count, (SELECT count(*) FROM mini_app_order_events) FROM notifications").Scan(&dc, &events); err != nil {
		t.Fatal(err)
	}
	if dc != n || events != 1 || g.count(t, "notifications") != 1 {
		t.Fatalf("delivery_count %d, order events %d", dc, events)
	}
}

func TestMetrics(t *testing.T) {
	t.Parallel()
	db := pgtest.New(t)
	m := metrics.New()
	g := startGateway(t, db, rig{metrics: m})
	body := testkit.Body(t, testkit.Sample(t, "audit-passed", testkit.AppID), testkit.AlipayKey())
	g.mustAccept(t, body)
	g.mustAccept(t, body)
	g.post(t, testkit.Body(t, testkit.Sample(t, "audit-passed", testkit.AppID), testkit.OtherKey()))
	g.post(t, "a="+strings.Repeat("x", 17<<10))
	m.Sample(context.Background(), db.Pool, db)
	resp, err := http.Get(g.srv.URL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	for _, want := range []string{
		`alipay_gateway_notifications_total{msg_method="alipay.open.mini.version.audit.passed",outcome="applied"} 1`,
		`alipay_gateway_notifications_total{msg_method="alipay.open.mini.version.audit.passed",outcome="duplicate"} 1`,
		`alipay_gateway_refusals_total{reason="bad_signature"} 1`,
		`alipay_gateway_refusals_total{reason="body_too_large"} 1`,
		`alipay_gateway_intake_duration_seconds_count{channel="http"} 4`,
		`alipay_gateway_db_pool_connections{state="max"}`,
		`alipay_gateway_oldest_failed_notification_age_seconds 0`,
		`alipay_gateway_last_notification_timestamp_seconds`,
	} {
		if !strings.Contains(string(b), want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
}

// TestNotify_DatabaseOutage: with the database gone, deliveries get 503
// fail; once it is back, the same running gateway answers success.
func TestNotify_DatabaseOutage(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	proxy, url := pgtest.NewProxy(t, pgtest.NewSchema(t))
	db, err := postgres.Open(ctx, postgres.Config{URL: url})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if err := db.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	batcher := postgres.NewBatcher(db, postgres.BatcherConfig{})
	defer batcher.Close()
	g := startGateway(t, db, rig{inbox: batcher})
	g.mustAccept(t, testkit.Body(t, testkit.Sample(t, "audit-passed", testkit.AppID), testkit.AlipayKey()))

	proxy.Stop()
	down := testkit.Body(t, testkit.Sample(t, "audit-rejected", testkit.AppID), testkit.AlipayKey())
	if code, reply := g.post(t, down); code != 503 || reply != "fail" {
		t.Fatalf("database down: got %d %q, want 503 fail", code, reply)
	}
	resp, err := http.Get(g.srv.URL + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 503 {
		t.Fatalf("readyz with the database down: %d", resp.StatusCode)
	}

	proxy.Start()
	g.mustAccept(t, down) // Alipay's resend, on the same gateway
	if n := g.count(t, "notifications"); n != 2 {
		t.Fatalf("%d notifications stored", n)
	}
}

// arrivalCounter forwards to a notify.Arrivals and counts the calls.
type arrivalCounter struct {
	next          notify.Arrivals
	on, announced atomic.Int32
}

func (a *arrivalCounter) Arriving() { a.announced.Add(1); a.on.Add(1); a.next.Arriving() }
func (a *arrivalCounter) Arrived()  { a.on.Add(-1); a.next.Arrived() }

// TestNotify_Arrivals checks that every delivery, accepted or refused, is
// announced to the group-commit Batcher while it is read and verified, and
// counted off once.
func TestNotify_Arrivals(t *testing.T) {
	t.Parallel()
	db := pgtest.New(t)
	b := postgres.NewBatcher(db, postgres.BatcherConfig{})
	defer b.Close()
	counter := &arrivalCounter{next: b}
	g := startGateway(t, db, rig{inbox: b, arrivals: counter})
	bodies := []string{"", "%%%", "a=" + strings.Repeat("x", 17<<10), testkit.Body(t, testkit.Sample(t, "audit-rejected", testkit.AppID), testkit.OtherKey())}
	for _, s := range []string{"audit-rejected", "merchant-confirmed", "appauth-cancelled"} {
		bodies = append(bodies, testkit.Body(t, testkit.Sample(t, s, testkit.AppID), testkit.AlipayKey()))
	}
	var wg sync.WaitGroup
	for _, body := range bodies {
		for range 4 {
			wg.Go(func() { g.post(t, body) })
		}
	}
	wg.Wait()
	if n, on := counter.announced.Load(), counter.on.Load(); n != int32(4*len(bodies)) || on != 0 {
		t.Fatalf("%d announced, %d still on their way; want %d and 0", n, on, 4*len(bodies))
	}
	if n := g.count(t, "notifications"); n != 3 {
		t.Fatalf("%d notifications stored; want 3", n)
	}
}
