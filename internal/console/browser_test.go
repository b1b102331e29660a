package console_test

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"

	"github.com/alipay-notify-gateway/gateway/internal/alipay"
	"github.com/alipay-notify-gateway/gateway/internal/notify"
	"github.com/alipay-notify-gateway/gateway/internal/testkit"
)

// The browser tests drive Debian's chromium, headless, against a real
// gateway (a real listener, real Postgres, real signed notifications), as
// an operator would: one browser for the test binary, a fresh browser
// context (its own cookies) per test. Without chromium they are skipped,
// saying so (and deploy/dev/test.sh says so too).
//
// CONSOLE_SCREENSHOTS=1 also writes the screenshots of docs/console/.

var browser struct {
	once   sync.Once
	ctx    context.Context
	cancel context.CancelFunc
	err    error
	path   string
}

// chromiumPath finds the browser: $CHROMIUM, or Debian's chromium.
func chromiumPath() string {
	if p := os.Getenv("CHROMIUM"); p != "" {
		return p
	}
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome", "google-chrome-stable"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	return ""
}

func TestMain(m *testing.M) {
	code := m.Run()
	if browser.cancel != nil {
		browser.cancel()
	}
	os.Exit(code)
}

// tab returns a new tab in a browser context of its own, for the test's
// time (at most two minutes).
func tab(t *testing.T) context.Context {
	t.Helper()
	browser.once.Do(func() {
		browser.path = chromiumPath()
		if browser.path == "" {
			return
		}
		opts := append(chromedp.DefaultExecAllocatorOptions[:], chromedp.ExecPath(browser.path),
			chromedp.WindowSize(1280, 900), chromedp.Flag("disable-dev-shm-usage", true))
		if os.Geteuid() == 0 {
			opts = append(opts, chromedp.NoSandbox) // chromium refuses to run as root with its sandbox
		}
		alloc, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
		ctx, cancel := chromedp.NewContext(alloc)
		browser.ctx = ctx
		browser.cancel = func() { cancel(); cancelAlloc() }
		browser.err = chromedp.Do(ctx) // starts it
	})
	if browser.path == "" {
		t.Skip("chromium not found (install Debian's chromium, or set CHROMIUM): the console's browser tests are SKIPPED")
	}
	if browser.err != nil {
		t.Fatalf("chromium (%s) did not start: %v", browser.path, browser.err)
	}
	ctx, cancel := chromedp.NewContext(browser.ctx, chromedp.WithNewBrowserContext())
	t.Cleanup(cancel)
	ctx, cancelTime := context.WithTimeout(ctx, 2*time.Minute)
	t.Cleanup(cancelTime)
	// A browser of a Chinese-reading operator (headless chromium says en-US).
	lang := chromedp.Func(func(ctx context.Context, t *chromedp.Target) error {
		if _, err := cdp.Call(ctx, t, network.Enable, network.EnableParams{}); err != nil {
			return err
		}
		_, err := cdp.Call(ctx, t, network.SetExtraHTTPHeaders, network.SetExtraHTTPHeadersParams{
			Headers: network.Headers{"Accept-Language": "zh-CN,zh;q=0.9,en;q=0.6"}})
		return err
	})
	if err := chromedp.Do(ctx, lang); err != nil {
		t.Fatal(err)
	}
	return ctx
}

// must runs steps and fails the test, saying what it was doing, if one
// fails.
func must(t *testing.T, ctx context.Context, what string, steps ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	if err := chromedp.Do(ctx, steps...); err != nil {
		page, _ := chromedp.Run(ctx, chromedp.OuterHTML(chromedp.CSS("body")))
		loc, _ := chromedp.Run(ctx, chromedp.Location())
		t.Fatalf("%s: %v (at %s)\n%s", what, err, loc, notify.ClipTo(page, 4000))
	}
}

// text returns the text of the element sel.
func text(t *testing.T, ctx context.Context, sel string) string {
	t.Helper()
	s, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS(sel)))
	if err != nil {
		t.Fatalf("text of %s: %v", sel, err)
	}
	return s
}

// location returns the tab's URL.
func location(t *testing.T, ctx context.Context) string {
	t.Helper()
	s, err := chromedp.Run(ctx, chromedp.Location())
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// screenshot writes docs/console/name.png when CONSOLE_SCREENSHOTS is set.
func screenshot(t *testing.T, ctx context.Context, name string) {
	t.Helper()
	if os.Getenv("CONSOLE_SCREENSHOTS") == "" {
		return
	}
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatalf("screenshot %s: %v", name, err)
	}
	dir := filepath.Join("..", "..", "docs", "console")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, name+".png"), png, 0o644); err != nil {
		t.Fatal(err)
	}
}

// screenshotOf writes docs/console/name.png of the element sel (a section
// of a page) when CONSOLE_SCREENSHOTS is set.
func screenshotOf(t *testing.T, ctx context.Context, sel, name string) {
	t.Helper()
	if os.Getenv("CONSOLE_SCREENSHOTS") == "" {
		return
	}
	png, err := chromedp.Run(ctx, chromedp.Screenshot(chromedp.CSS(sel)))
	if err != nil {
		t.Fatalf("screenshot %s: %v", name, err)
	}
	if err := os.WriteFile(filepath.Join("..", "..", "docs", "console", name+".png"), png, 0o644); err != nil {
		t.Fatal(err)
	}
}

// fitsWidth checks that the page needs no sideways scrolling at its
// width (tables scroll inside their own boxes).
func fitsWidth(t *testing.T, ctx context.Context, what string) {
	t.Helper()
	w, err := chromedp.Run(ctx, chromedp.Evaluate[[]int](`[document.documentElement.scrollWidth, window.innerWidth]`))
	if err != nil {
		t.Fatal(err)
	}
	if len(w) != 2 || w[0] > w[1] {
		t.Fatalf("%s is %d px wide in a %d px window", what, w[0], w[1])
	}
}

// spreadIntake gives the stored notifications arrival times over the last
// day, and refuses a few deliveries, so that the overview has something
// to draw.
func spreadIntake(t *testing.T, g *gateway) {
	t.Helper()
	for i := range 24 {
		f := testkit.Form(testkit.AppID, notify.MethodAuditPassed, fmt.Sprintf(`{"mini_app_id":"20210000000%05d","mini_app_version":"1.0.%d"}`, i, i), int64(1000+i))
		if i%7 == 3 {
			f = testkit.Form(testkit.AppID, "alipay.open.mini.unknown.changed", `{}`, 1)
		}
		if i%11 == 5 {
			f = testkit.Form(testkit.AppID, notify.MethodAuditPassed, `not json`, 1)
		}
		send(t, g.srv.URL, testkit.Body(t, f, testkit.AlipayKey()))
	}
	_, err := g.db.Pool.Exec(context.Background(), `UPDATE notifications SET received_at = CASE
            WHEN id > (SELECT max(id) - 12 FROM notifications) THEN now() - (id % 12) * interval '4 minutes' - interval '20 seconds'
            ELSE now() - interval '1 hour' - (id % 23) * interval '57 minutes' - (id % 5) * interval '3 minutes' END`)
	if err != nil {
		t.Fatal(err)
	}
	for range 3 {
		forged := testkit.Form(testkit.AppID, notify.MethodAuditPassed, `{"mini_app_id":"x"}`, 1)
		postForm(t, g.srv.URL, testkit.Body(t, forged, testkit.OtherKey()))
	}
}

// freshGrant is the samples' authorization grant, authorized 30 days ago
// (the sample's own date is of 2018: its token would have expired).
func freshGrant(t *testing.T) alipay.Form {
	t.Helper()
	f := testkit.Sample(t, "auth-granted", testkit.AppID)
	at := time.Now().Add(-30 * 24 * time.Hour).Truncate(time.Second)
	f["biz_content"] = strings.Replace(f["biz_content"], `"auth_time":1516797623000`, fmt.Sprintf(`"auth_time":%d`, at.UnixMilli()), 1)
	f["notify_time"] = at.In(alipay.ChinaTime).Format(time.DateTime)
	return f
}

// postForm posts a body to /alipay/notify whatever the answer.
func postForm(t *testing.T, base, body string) {
	t.Helper()
	resp, err := http.Post(base+"/alipay/notify", "application/x-www-form-urlencoded", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
}

// TestBrowser_Operator is an operator's round: sign in (with the keyboard),
// find a merchant, open its mini-app's audit timeline after its
// notifications came, reprocess a failed notification (first with a
// tampered CSRF token: refused), paste a forged body into verify, sign
// out; then the console sends a tab without a session back to sign in.
func TestBrowser_Operator(t *testing.T) {
	t.Parallel()
	ctx := tab(t)
	g := newGateway(t)
	send(t, g.srv.URL, testkit.Body(t, freshGrant(t), testkit.AlipayKey()))
	miniApp := testkit.MerchantAppID // a merchant's own mini-app is its authorizing app
	sendAudits(t, g, miniApp)
	failed := encryptedOrder(t)
	send(t, g.before.URL, testkit.Body(t, failed, testkit.PKI().Alipay.Key))
	spreadIntake(t, g)
	base := g.srv.URL + "/console"

	// Signing in, with the keyboard only: the token field has the focus.
	must(t, ctx, "open the console", chromedp.Navigate(base+"/"), chromedp.WaitVisible(chromedp.CSS("#token")))
	if loc := location(t, ctx); !strings.Contains(loc, "/console/login?next=") {
		t.Fatalf("without a session the console is at %s", loc)
	}
	if label := text(t, ctx, `label[for="token"]`); label != "运维 API 令牌" {
		t.Fatalf("the sign-in page is not in Chinese first: %q", label)
	}
	screenshot(t, ctx, "login")
	must(t, ctx, "sign in", chromedp.SendKeys(chromedp.CSS("#token"), opsToken+"\r"), chromedp.WaitVisible(chromedp.CSS("#h-health")))
	if text(t, ctx, "#accepted-1") == "0" {
		t.Fatal("the overview shows no intake for the day")
	}
	if page := text(t, ctx, "main"); !strings.Contains(page, "bad_signature") {
		t.Fatalf("the overview does not show this replica's refusals:\n%s", page)
	}
	screenshot(t, ctx, "overview")

	// Finding the merchant by the start of its auth_app_id.
	must(t, ctx, "open the merchants", chromedp.Click(chromedp.CSS(`nav a[href="/console/merchants"]`)), chromedp.WaitVisible(chromedp.CSS("#q")))
	must(t, ctx, "search", chromedp.SendKeys(chromedp.CSS("#q"), testkit.MerchantAppID[:8]), chromedp.Submit(chromedp.CSS("#q")),
		chromedp.WaitVisible(chromedp.CSS(`#merchants a[href="/console/merchants/`+testkit.MerchantAppID+`"]`)))
	screenshot(t, ctx, "merchants")
	must(t, ctx, "open the merchant", chromedp.Click(chromedp.CSS(`#merchants a[href="/console/merchants/`+testkit.MerchantAppID+`"]`)),
		chromedp.WaitVisible(chromedp.CSS("#merchant-id")))
	if page := text(t, ctx, "main"); !strings.Contains(page, testkit.UserID) || !strings.Contains(page, "已授权") || strings.Contains(page, "202301BB") {
		t.Fatalf("the merchant's page:\n%s", page)
	}
	screenshot(t, ctx, "merchant")

	// Its mini-app's audit timeline.
	must(t, ctx, "open the mini-app", chromedp.Click(chromedp.CSS(`#h-apps + .scroll a[href="/console/mini-apps/`+miniApp+`"]`)),
		chromedp.WaitVisible(chromedp.CSS("#timeline")))
	timeline := text(t, ctx, "#timeline")
	for _, want := range []string{"版本 0.0.2", "版本 0.0.1", "JS错误检测:发现JS错误", "首页白屏", "memo-1.png", "memo-2.png", "shot-1.png", "营销信息不符", "promo.png", "过期通知，未生效", "迟到的驳回"} {
		if !strings.Contains(timeline, want) {
			t.Fatalf("the timeline lacks %q:\n%s", want, timeline)
		}
	}
	if st := text(t, ctx, "#audit-status"); st != "基础审核通过" {
		t.Fatalf("audit state %q", st)
	}
	screenshot(t, ctx, "miniapp")

	// The failed notification: refused with a tampered CSRF token, then
	// reprocessed.
	must(t, ctx, "list the failed", chromedp.Navigate(base+"/notifications?status=failed"),
		chromedp.WaitVisible(chromedp.CSS(`a[href^="/console/notifications/`+failed["notify_id"]+`"]`)))
	must(t, ctx, "open the failed", chromedp.Click(chromedp.CSS(`a[href^="/console/notifications/`+failed["notify_id"]+`"]`)),
		chromedp.WaitVisible(chromedp.CSS("#reprocess")))
	if st, e := text(t, ctx, "#status"), text(t, ctx, "#error"); st != "失败" || !strings.Contains(e, "ALIPAY_ENCRYPT_KEY") {
		t.Fatalf("before: %q %q", st, e)
	}
	if form := text(t, ctx, "#content-form"); form != "v1" {
		t.Fatalf("content form %q", form)
	}
	must(t, ctx, "tamper with the CSRF token", chromedp.SetValue(chromedp.CSS(`form.action input[name="csrf"]`), "forged"),
		chromedp.Click(chromedp.CSS("#reprocess")), chromedp.WaitVisible(chromedp.CSS(`div[role="alert"]`)))
	if page := text(t, ctx, "main"); !strings.Contains(page, "403") || !strings.Contains(page, "CSRF") {
		t.Fatalf("a tampered form was not refused:\n%s", page)
	}
	var status string
	_ = g.db.Pool.QueryRow(context.Background(), `SELECT status FROM notifications WHERE notify_id = $1`, failed["notify_id"]).Scan(&status)
	if status != "failed" {
		t.Fatalf("a refused form changed the notification: %s", status)
	}
	must(t, ctx, "reprocess", chromedp.Navigate(g.srv.URL+"/console/notifications/"+failed["notify_id"]+"?app_id="+testkit.CertAppID), chromedp.WaitVisible(chromedp.CSS("#reprocess")),
		chromedp.Click(chromedp.CSS("#reprocess")), chromedp.WaitVisible(chromedp.CSS(`p.flash`)))
	if st := text(t, ctx, "#status"); st != "已生效" {
		t.Fatalf("after reprocessing: %q", st)
	}
	if biz := text(t, ctx, "#biz"); !strings.Contains(biz, `"order_no": "2394834823942343"`) {
		t.Fatalf("biz_content not decrypted and pretty-printed:\n%s", biz)
	}
	screenshot(t, ctx, "notification")

	// A forged body in verify.
	forged := testkit.Body(t, testkit.Sample(t, "audit-rejected", testkit.AppID), testkit.OtherKey())
	must(t, ctx, "open verify", chromedp.Click(chromedp.CSS(`nav a[href="/console/verify"]`)), chromedp.WaitVisible(chromedp.CSS("#body")))
	must(t, ctx, "diagnose", chromedp.SetValue(chromedp.CSS("#body"), forged), chromedp.Click(chromedp.CSS("#diagnose")),
		chromedp.WaitVisible(chromedp.CSS("#verdict")))
	if answer := text(t, ctx, "#answer"); !strings.Contains(answer, "403") || !strings.Contains(answer, "bad_signature") {
		t.Fatalf("verify's verdict: %q", answer)
	}
	if findings := text(t, ctx, "#findings"); !strings.Contains(findings, "wrong_key") {
		t.Fatalf("verify's findings:\n%s", findings)
	}
	screenshot(t, ctx, "verify")

	// The phone: 360 px wide.
	must(t, ctx, "a phone's width", chromedp.EmulateViewport(360, 740, chromedp.EmulateMobile), chromedp.Navigate(base+"/mini-apps/"+miniApp),
		chromedp.WaitVisible(chromedp.CSS("#timeline")))
	fitsWidth(t, ctx, "the mini-app page")
	screenshot(t, ctx, "phone-miniapp")
	must(t, ctx, "the overview on a phone", chromedp.Navigate(base+"/"), chromedp.WaitVisible(chromedp.CSS("#h-health")))
	fitsWidth(t, ctx, "the overview")
	must(t, ctx, "back to a desktop", chromedp.EmulateViewport(1280, 900))

	// English, by the switch.
	must(t, ctx, "switch to English", chromedp.Click(chromedp.CSS("a.lang")), chromedp.WaitVisible(chromedp.CSS("#h-health")))
	if h := text(t, ctx, "#h-health"); h != "Gateway health" {
		t.Fatalf("after the switch: %q", h)
	}

	// Signing out, then a tab without a session goes back to sign in.
	must(t, ctx, "sign out", chromedp.Click(chromedp.CSS("#signout")), chromedp.WaitVisible(chromedp.CSS("#token")))
	if loc := location(t, ctx); !strings.HasSuffix(loc, "/console/login?out=1") {
		t.Fatalf("after signing out: %s", loc)
	}
	must(t, ctx, "come back", chromedp.Navigate(base+"/merchants"), chromedp.WaitVisible(chromedp.CSS("#token")))
	var sessions int
	_ = g.db.Pool.QueryRow(context.Background(), `SELECT count(*) FROM console_sessions`).Scan(&sessions)
	if sessions != 0 {
		t.Fatalf("%d sessions left after signing out", sessions)
	}
}

// signInTab signs the tab in with the keyboard, at base (the console).
func signInTab(t *testing.T, ctx context.Context, base string) {
	t.Helper()
	must(t, ctx, "sign in", chromedp.Navigate(base+"/login"), chromedp.WaitVisible(chromedp.CSS("#token")),
		chromedp.SendKeys(chromedp.CSS("#token"), opsToken+"\r"), chromedp.WaitVisible(chromedp.CSS("#h-health")))
}

// TestBrowser_Reconciliation: an operator starts a run of one merchant
// from the reconciliation page; once the reconciler has checked it
// against the simulator, the run's page shows the repair of the audit
// whose notification was lost, the drift page finds it by mini-app, the
// overview counts it, and the mini-app says when it was reconciled; the
// pages fit a phone.
func TestBrowser_Reconciliation(t *testing.T) {
	t.Parallel()
	ctx := tab(t)
	g := newGateway(t, rigOptions{reconcile: true})
	lostAudit(t, g, merchantR)
	base := g.srv.URL + "/console"
	signInTab(t, ctx, base)

	must(t, ctx, "open reconciliation", chromedp.Click(chromedp.CSS(`nav a[href="/console/reconciliation"]`)), chromedp.WaitVisible(chromedp.CSS("#run-id")))
	must(t, ctx, "run one merchant", chromedp.SendKeys(chromedp.CSS("#run-id"), merchantR), chromedp.Click(chromedp.CSS("#run-one")),
		chromedp.WaitVisible(chromedp.CSS("#run-status")))
	if st, flash := text(t, ctx, "#run-status"), text(t, ctx, "p.flash"); st != "进行中" || !strings.Contains(flash, "对账任务已开始") {
		t.Fatalf("after starting: %q %q", st, flash)
	}
	g.work(t) // the reconciler checks it (in a gateway, its Run loop does)
	must(t, ctx, "reload", chromedp.Reload(), chromedp.WaitVisible(chromedp.CSS("#run-status")))
	if st, n := text(t, ctx, "#run-status"), text(t, ctx, "#run-repaired"); st != "已完成" || n != "1" {
		t.Fatalf("the run: %q, %s repaired", st, n)
	}
	if drift := text(t, ctx, "#drift"); !strings.Contains(drift, merchantR+"@1.1.0") || !strings.Contains(drift, "审核驳回") {
		t.Fatalf("the run's repairs:\n%s", drift)
	}
	must(t, ctx, "open Alipay's answer", chromedp.Click(chromedp.CSS("#drift summary")), chromedp.WaitVisible(chromedp.CSS("#drift details pre")))
	if answer := text(t, ctx, "#drift details pre"); !strings.Contains(answer, "AUDIT_REJECT") {
		t.Fatalf("Alipay's answer: %s", answer)
	}
	screenshot(t, ctx, "reconcile-run")

	must(t, ctx, "the runs", chromedp.Click(chromedp.CSS(`nav a[href="/console/reconciliation"]`)), chromedp.WaitVisible(chromedp.CSS("#runs")))
	if n := text(t, ctx, "#repaired-day"); n != "1" {
		t.Fatalf("repairs of the day: %q", n)
	}
	screenshot(t, ctx, "reconciliation")
	must(t, ctx, "the drift by mini-app", chromedp.Navigate(base+"/reconciliation/drift"), chromedp.WaitVisible(chromedp.CSS("#mini_app_id")),
		chromedp.SendKeys(chromedp.CSS("#mini_app_id"), merchantR), chromedp.Submit(chromedp.CSS("#mini_app_id")),
		chromedp.WaitVisible(chromedp.CSS(`#drift a[href="/console/mini-apps/`+merchantR+`"]`)))
	must(t, ctx, "the mini-app", chromedp.Click(chromedp.CSS(`#drift a[href="/console/mini-apps/`+merchantR+`"]`)), chromedp.WaitVisible(chromedp.CSS("#reconciled")))
	if at := text(t, ctx, "#reconciled"); at == "-" || !strings.Contains(at, "CST") {
		t.Fatalf("last reconciled at %q", at)
	}
	must(t, ctx, "the overview", chromedp.Click(chromedp.CSS(`nav a[href="/console/"]`)), chromedp.WaitVisible(chromedp.CSS("#h-rec")))
	if n := text(t, ctx, "#overview-repaired"); n != "1" {
		t.Fatalf("the overview's repairs: %q", n)
	}
	screenshotOf(t, ctx, `section[aria-labelledby="h-rec"]`, "overview-reconciliation")

	must(t, ctx, "a phone's width", chromedp.EmulateViewport(360, 740, chromedp.EmulateMobile), chromedp.Navigate(base+"/reconciliation"),
		chromedp.WaitVisible(chromedp.CSS("#runs")))
	fitsWidth(t, ctx, "the reconciliation page")
	must(t, ctx, "the run on a phone", chromedp.Click(chromedp.CSS(`#runs a[href^="/console/reconciliation/runs/"]`)), chromedp.WaitVisible(chromedp.CSS("#run-status")))
	fitsWidth(t, ctx, "the run's page")
}

// TestBrowser_Batch: an operator watches a batch being sent to the
// simulator (its rate and time left), pauses it (no send goes out while
// it is paused), then cancels it: what was pending is cancelled. The
// batch's page fits a phone.
func TestBrowser_Batch(t *testing.T) {
	t.Parallel()
	ctx := tab(t)
	g := newGateway(t, rigOptions{batches: true})
	g.batchOf(t, 500, 20) // an older batch, left pending, for the list
	id := g.batchOf(t, 1, 60)
	if _, err := g.db.Pool.Exec(context.Background(), `UPDATE template_message_batches SET status = 'paused' WHERE id <> $1`, id); err != nil {
		t.Fatal(err)
	}
	g.sender(t, 5) // 5 a second: twelve seconds for the batch
	base := g.srv.URL + "/console"
	signInTab(t, ctx, base)
	waitFor(t, "sends", func() bool { return g.batchCount(t, id, "sent") >= 5 })

	must(t, ctx, "open the batches", chromedp.Click(chromedp.CSS(`nav a[href="/console/batches"]`)), chromedp.WaitVisible(chromedp.CSS("#batches")))
	screenshot(t, ctx, "batches")
	page := fmt.Sprintf("/console/batches/%d", id)
	must(t, ctx, "open the batch", chromedp.Click(chromedp.CSS(`#batches a[href="`+page+`"]`)), chromedp.WaitVisible(chromedp.CSS("#batch-status")))
	if st, rate, eta := text(t, ctx, "#batch-status"), text(t, ctx, "#batch-rate"), text(t, ctx, "#batch-eta"); st != "发送中" || rate == "0.0" || eta == "-" {
		t.Fatalf("while sending: %q, rate %q, time left %q", st, rate, eta)
	}
	screenshot(t, ctx, "batch")

	must(t, ctx, "pause", chromedp.Click(chromedp.CSS("#pause")), chromedp.WaitVisible(chromedp.CSS("#resume")))
	if st := text(t, ctx, "#batch-status"); st != "已暂停" || !strings.Contains(text(t, ctx, "p.flash"), "已暂停") {
		t.Fatalf("after pausing: %q", st)
	}
	// The calls in flight end and are recorded; then none goes out.
	waitFor(t, "the sends in flight", func() bool { return g.batchCount(t, id, "sending") == 0 })
	sent := len(g.sim.Sent())
	time.Sleep(600 * time.Millisecond)
	if now := len(g.sim.Sent()); now != sent || g.batchCount(t, id, "pending") == 0 {
		t.Fatalf("a paused batch sent %d more (pending %d)", now-sent, g.batchCount(t, id, "pending"))
	}

	must(t, ctx, "cancel", chromedp.Click(chromedp.CSS("#cancel")), chromedp.WaitVisible(chromedp.CSS("#count-cancelled a")))
	if st := text(t, ctx, "#batch-status"); st != "已取消" {
		t.Fatalf("after cancelling: %q", st)
	}
	if g.batchStatus(t, id) != notify.BatchCancelled || g.batchCount(t, id, "pending") != 0 || g.batchCount(t, id, "cancelled") == 0 {
		t.Fatalf("cancelled batch: %s, %d pending", g.batchStatus(t, id), g.batchCount(t, id, "pending"))
	}
	if n := text(t, ctx, "#count-sent"); n != fmt.Sprint(g.batchCount(t, id, "sent")) || n != fmt.Sprint(len(g.sim.Sent())) {
		t.Fatalf("the page says %s sent; the simulator got %d", n, len(g.sim.Sent()))
	}
	must(t, ctx, "its cancelled recipients", chromedp.Click(chromedp.CSS("#count-cancelled a")), chromedp.WaitVisible(chromedp.CSS("#recipients")))
	if rows := text(t, ctx, "#recipients tbody"); !strings.Contains(rows, "已取消") || strings.Contains(rows, "已发送") {
		t.Fatalf("the cancelled recipients:\n%s", rows)
	}

	must(t, ctx, "a phone's width", chromedp.EmulateViewport(360, 740, chromedp.EmulateMobile), chromedp.Navigate(g.srv.URL+page),
		chromedp.WaitVisible(chromedp.CSS("#batch-status")))
	fitsWidth(t, ctx, "the batch's page")
	must(t, ctx, "the batches on a phone", chromedp.Navigate(base+"/batches"), chromedp.WaitVisible(chromedp.CSS("#batches")))
	fitsWidth(t, ctx, "the batches")
}

// waitFor waits (at most 30 s) until cond holds.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("waited 30 s for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
