package console_test

import (
	"context"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"

	"github.com/alipay-notify-gateway/gateway/internal/console"
	"github.com/alipay-notify-gateway/gateway/internal/notify"
	"github.com/alipay-notify-gateway/gateway/internal/testkit"
)

// merchantR is the merchant app the reconciliation tests authorize.
const merchantR = "2021000000000301"

// runs counts the reconciliation runs.
func (g *gateway) runs(t *testing.T) int {
	t.Helper()
	var n int
	if err := g.db.Pool.QueryRow(context.Background(), `SELECT count(*) FROM reconcile_runs`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

var runLocation = regexp.MustCompile(`^/console/reconciliation/runs/(\d+)\?done=started$`)

// TestConsole_Reconcile: a run of one merchant started by the console's
// form (refused without the CSRF token, creating no run) repairs a lost
// audit against the simulator; the run's page, the drift, the overview,
// the merchant's and the mini-app's pages show it.
func TestConsole_Reconcile(t *testing.T) {
	t.Parallel()
	g := newGateway(t, rigOptions{reconcile: true})
	lostAudit(t, g, merchantR)
	c := g.client(t)
	csrf := c.signIn()
	if page := c.mustGet("/console/reconciliation"); !strings.Contains(page, "还没有对账任务") || !strings.Contains(page, `href="/console/reconciliation" aria-current="page"`) {
		t.Fatalf("the reconciliation page before any run:\n%s", page)
	}
	if page := c.mustGet("/console/"); !strings.Contains(page, `id="h-rec"`) || !strings.Contains(page, "还没有对账任务") {
		t.Fatal("the overview has no reconciliation section")
	}
	form := url.Values{"scope": {"auth_app_id"}, "id": {merchantR}}
	runPage := "" // the run OK started

	t.Run("ErrNoCSRF", func(t *testing.T) {
		for _, f := range []url.Values{form, withCSRF(form, "forged"), withCSRF(url.Values{"scope": {"all"}}, csrf+"x")} {
			if code, _, page := c.do("POST", "/console/reconciliation/runs", f); code != http.StatusForbidden || !strings.Contains(page, "CSRF") {
				t.Fatalf("%v: %d", f, code)
			}
		}
		if n := g.runs(t); n != 0 {
			t.Fatalf("a refused form started %d runs", n)
		}
	})
	t.Run("ErrBadForm", func(t *testing.T) {
		for name, tc := range map[string]struct {
			form url.Values
			code int
		}{
			"Scope":           {url.Values{"scope": {"everything"}}, 400},
			"NoScope":         {url.Values{}, 400},
			"NoID":            {url.Values{"scope": {"auth_app_id"}, "id": {" "}}, 400},
			"AllWithID":       {url.Values{"scope": {"all"}, "id": {merchantR}}, 400},
			"UnknownMerchant": {url.Values{"scope": {"auth_app_id"}, "id": {"2021000000000999"}}, 404},
			"UnknownMiniApp":  {url.Values{"scope": {"mini_app_id"}, "id": {"2021000000000999"}}, 404},
		} {
			t.Run(name, func(t *testing.T) {
				if code, _, page := c.do("POST", "/console/reconciliation/runs", withCSRF(tc.form, csrf)); code != tc.code {
					t.Fatalf("%d, want %d\n%s", code, tc.code, page)
				}
			})
		}
		if n := g.runs(t); n != 0 {
			t.Fatalf("a refused form started %d runs", n)
		}
	})

	t.Run("OK", func(t *testing.T) {
		code, loc, _ := c.do("POST", "/console/reconciliation/runs", withCSRF(form, csrf))
		m := runLocation.FindStringSubmatch(loc)
		if code != http.StatusSeeOther || m == nil {
			t.Fatalf("start: %d %q", code, loc)
		}
		if page := c.mustGet(loc); !strings.Contains(page, "对账任务已开始") || !strings.Contains(page, `id="run-status">进行中`) {
			t.Fatalf("the run's page while it runs:\n%s", page)
		}
		g.work(t)
		runPage = "/console/reconciliation/runs/" + m[1]
		page := c.mustGet(runPage)
		for _, want := range []string{`id="run-status">已完成`, `id="run-repaired">1<`, `id="run-errors">0<`, merchantR + "@1.1.0", "审核驳回", "手动", "requested from the console", "auth_app_id", "服务类目不符"} {
			if !strings.Contains(page, want) {
				t.Fatalf("the finished run's page lacks %q:\n%s", want, page)
			}
		}
		if page := c.mustGet("/console/reconciliation"); !strings.Contains(page, `href="/console/reconciliation/runs/`+m[1]+`"`) || !strings.Contains(page, `id="repaired-day"><strong>1<`) {
			t.Fatalf("the runs' page:\n%s", page)
		}
		for path, want := range map[string]int{
			"/console/reconciliation/drift":                                                     1,
			"/console/reconciliation/drift?mini_app_id=" + merchantR:                            1,
			"/console/reconciliation/drift?auth_app_id=" + merchantR + "&kind=mini_app_version": 1,
			"/console/reconciliation/drift?kind=authorization":                                  0,
			"/console/reconciliation/drift?run_id=" + m[1]:                                      1,
			"/console/reconciliation/drift?auth_app_id=2021000000000999":                        0,
		} {
			if got := strings.Count(c.mustGet(path), `<a href="/console/reconciliation/runs/`); got != want {
				t.Errorf("%s: %d repairs, want %d", path, got, want)
			}
		}
		if page := c.mustGet("/console/"); !strings.Contains(page, `id="overview-repaired"><strong class="warn">1<`) || !strings.Contains(page, `href="/console/reconciliation/runs/`+m[1]+`"`) {
			t.Fatalf("the overview's reconciliation:\n%s", page)
		}
		merchant := c.mustGet("/console/merchants/" + merchantR)
		app := c.mustGet("/console/mini-apps/" + merchantR)
		if strings.Contains(merchant, `class="reconciled">-<`) || !strings.Contains(merchant, `id="merchant-drift"`) ||
			strings.Contains(app, `id="reconciled">-<`) || !strings.Contains(app, `id="miniapp-drift"`) {
			t.Fatalf("last reconciled at not shown:\n%s\n%s", merchant, app)
		}
	})
	t.Run("NoSecret", func(t *testing.T) {
		token, refresh := g.sim.Tokens(testkit.AppID, merchantR)
		if token == "" || refresh == "" {
			t.Fatal("the simulator issued no token")
		}
		for _, lang := range []string{"zh-CN", "en"} {
			for _, p := range []string{"/console/", "/console/reconciliation", runPage, "/console/reconciliation/drift",
				"/console/merchants/" + merchantR, "/console/mini-apps/" + merchantR} {
				if page := c.mustGet(p, "Accept-Language", lang); strings.Contains(page, token) || strings.Contains(page, refresh) {
					t.Fatalf("%s shows the merchant's token", p)
				}
			}
		}
	})
	t.Run("ErrQuery", func(t *testing.T) {
		for path, want := range map[string]int{
			"/console/reconciliation/runs/999":            404,
			"/console/reconciliation/runs/x":              400,
			"/console/reconciliation/runs/1?x=1":          400,
			"/console/reconciliation?cursor=!!":           400,
			"/console/reconciliation/drift?kind=order":    400,
			"/console/reconciliation/drift?run_id=0":      400,
			"/console/reconciliation/drift?cursor=!!":     400,
			"/console/reconciliation/drift?auth=x":        400,
			"/console/reconciliation/runs?scope=all":      405,
			"/console/reconciliation/runs/1/restart":      404,
			"/console/reconciliation/drift?run_id=abc":    400,
			"/console/reconciliation/drift?since=x&kind=": 400,
		} {
			if code, _, _ := c.do("GET", path, nil); code != want {
				t.Errorf("GET %s: %d, want %d", path, code, want)
			}
		}
	})
}

// TestConsole_ReconcileOff: without reconciliation (no outbound calls)
// there is no such page, and the overview says nothing of it.
func TestConsole_ReconcileOff(t *testing.T) {
	t.Parallel()
	g := newGateway(t)
	c := g.client(t)
	csrf := c.signIn()
	if page := c.mustGet("/console/"); strings.Contains(page, "/console/reconciliation") || strings.Contains(page, `id="h-rec"`) {
		t.Fatal("the overview shows reconciliation when it is off")
	}
	if code, _, _ := c.do("GET", "/console/reconciliation", nil); code != 404 {
		t.Fatalf("the page when reconciliation is off: %d", code)
	}
	if code, _, _ := c.do("POST", "/console/reconciliation/runs", url.Values{"csrf": {csrf}, "scope": {"all"}}); code != 404 {
		t.Fatalf("a run when reconciliation is off: %d", code)
	}
}

// withCSRF returns form with the CSRF token csrf.
func withCSRF(form url.Values, csrf string) url.Values {
	out := url.Values{"csrf": {csrf}}
	for k, v := range form {
		out[k] = v
	}
	return out
}

// TestMessages_Reconcile: the words the reconciliation templates build
// their keys from (a run's trigger and scope, a repair's kind, a run's
// status) are all in the table.
func TestMessages_Reconcile(t *testing.T) {
	t.Parallel()
	for _, k := range []string{
		"trigger." + notify.RunSchedule, "trigger." + notify.RunOutage, "trigger." + notify.RunManual,
		"scope." + notify.ScopeAll, "scope." + notify.ScopeMerchant, "scope." + notify.ScopeMiniApp,
		"drift.kind." + notify.DriftAuthorization, "drift.kind." + notify.DriftMiniAppVersion,
		"status." + notify.RunRunning, "status." + notify.RunFinished, "run.title", "drift.title",
	} {
		if !console.HasMessage(k) {
			t.Errorf("no message %s in both languages", k)
		}
	}
}
