package console_test

import (
	"context"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/alipay-notify-gateway/gateway/internal/console"
	"github.com/alipay-notify-gateway/gateway/internal/notify"
)

// TestConsole_Batches: a batch's page shows its counts, failures by
// sub_code and recipients by outcome (paged); pause, resume, retry-unknown
// and cancel work through the forms with the session's CSRF token, each
// refused without it (or, for retry-unknown, without the confirmation)
// changing nothing; what a status does not allow is refused with 409.
func TestConsole_Batches(t *testing.T) {
	t.Parallel()
	g := newGateway(t, rigOptions{batches: true})
	ctx := context.Background()
	id := g.batchOf(t, 1, 30)
	big := g.batchOf(t, 1000, 120)
	c := g.client(t)
	csrf := c.signIn()
	page := itoa(id)
	base := "/console/batches/" + page

	t.Run("List", func(t *testing.T) {
		list := c.mustGet("/console/batches")
		if !strings.Contains(list, `href="/console/batches/`+page+`"`) || !strings.Contains(list, `href="/console/batches/`+itoa(big)+`"`) ||
			!strings.Contains(list, "发送中") || !strings.Contains(list, "0/30") || !strings.Contains(list, `aria-current="page">模板消息群发`) {
			t.Fatalf("the batches:\n%s", list)
		}
	})
	t.Run("Page", func(t *testing.T) {
		p := c.mustGet(base)
		for _, want := range []string{`id="count-pending"><a href="/console/batches/` + page + `?status=pending">30<`, `id="pause"`, `id="cancel"`, "tpl-order-ready", "pages/order/index"} {
			if !strings.Contains(p, want) {
				t.Fatalf("the batch's page lacks %q:\n%s", want, p)
			}
		}
		if strings.Contains(p, `id="resume"`) || strings.Contains(p, `id="retry-unknown"`) {
			t.Fatal("a running batch with none unknown offers resume or retry-unknown")
		}
	})
	t.Run("Recipients", func(t *testing.T) {
		first := c.mustGet("/console/batches/" + itoa(big) + "?status=pending")
		if n := strings.Count(first, `<td><span class="badge st-pending">`); n != 50 || !strings.Contains(first, "2088000000001000") {
			t.Fatalf("first page: %d recipients", n)
		}
		next := hrefOf(t, first, "recipients-next")
		second := c.mustGet(next)
		if !strings.Contains(second, "2088000000001050") || strings.Contains(second, "2088000000001049") {
			t.Fatalf("second page (%s):\n%s", next, second)
		}
		if none := c.mustGet(base + "?status=sent"); !strings.Contains(none, "没有记录") {
			t.Fatal("a status with no recipient")
		}
	})

	t.Run("ErrNoCSRF", func(t *testing.T) {
		for _, action := range []string{"pause", "resume", "cancel", "retry-unknown"} {
			for _, f := range []url.Values{{}, {"csrf": {"forged"}, "confirm": {"yes"}}, {"csrf": {csrf + "x"}}} {
				if code, _, p := c.do("POST", base+"/"+action, f); code != http.StatusForbidden || !strings.Contains(p, "CSRF") {
					t.Fatalf("%s with %v: %d", action, f, code)
				}
			}
		}
		if s := g.batchStatus(t, id); s != notify.BatchRunning || g.batchCount(t, id, "pending") != 30 {
			t.Fatalf("a refused form changed the batch: %s", s)
		}
	})
	t.Run("PauseResume", func(t *testing.T) {
		code, loc, _ := c.do("POST", base+"/pause", url.Values{"csrf": {csrf}})
		if code != http.StatusSeeOther || loc != base+"?done=paused" || g.batchStatus(t, id) != notify.BatchPaused {
			t.Fatalf("pause: %d %q", code, loc)
		}
		if p := c.mustGet(loc); !strings.Contains(p, `id="batch-status">已暂停`) || !strings.Contains(p, `id="resume"`) || strings.Contains(p, `id="pause"`) ||
			!strings.Contains(p, "已暂停：") {
			t.Fatalf("after pausing:\n%s", p)
		}
		code, loc, _ = c.do("POST", base+"/resume", url.Values{"csrf": {csrf}})
		if code != http.StatusSeeOther || loc != base+"?done=resumed" || g.batchStatus(t, id) != notify.BatchRunning {
			t.Fatalf("resume: %d %q", code, loc)
		}
	})
	t.Run("RetryUnknown", func(t *testing.T) {
		_, err := g.db.Pool.Exec(ctx, `UPDATE template_message_recipients SET status = 'unknown', attempts = 1, error = 'timeout after the request was written'
            WHERE batch_id = $1 AND seq <= 5`, id)
		if err == nil {
			_, err = g.db.Pool.Exec(ctx, `UPDATE template_message_recipients SET status = 'failed', attempts = 1, code = '40004', sub_code = 'USER_TEMPLATE_ILLEGAL', finished_at = now()
                WHERE batch_id = $1 AND seq BETWEEN 6 AND 8`, id)
		}
		if err != nil {
			t.Fatal(err)
		}
		p := c.mustGet(base)
		for _, want := range []string{`id="retry-warning"`, "可能让他们收到两次", `name="confirm" value="yes" required`, `id="count-unknown"`, "USER_TEMPLATE_ILLEGAL</th><td class=\"num\">3<"} {
			if !strings.Contains(p, want) {
				t.Fatalf("the page with unknown recipients lacks %q:\n%s", want, p)
			}
		}
		if code, _, p := c.do("POST", base+"/retry-unknown", url.Values{"csrf": {csrf}}); code != http.StatusBadRequest || !strings.Contains(p, "twice") {
			t.Fatalf("retry-unknown unconfirmed: %d\n%s", code, p)
		}
		if n := g.batchCount(t, id, "unknown"); n != 5 {
			t.Fatalf("an unconfirmed retry-unknown changed %d", 5-n)
		}
		code, loc, _ := c.do("POST", base+"/retry-unknown", url.Values{"csrf": {csrf}, "confirm": {"yes"}})
		if code != http.StatusSeeOther || loc != base+"?done=requeued" || g.batchCount(t, id, "unknown") != 0 || g.batchCount(t, id, "pending") != 27 {
			t.Fatalf("retry-unknown: %d %q", code, loc)
		}
		if strings.Contains(c.mustGet(loc), `id="retry-unknown"`) {
			t.Fatal("retry-unknown still offered with none unknown")
		}
	})
	t.Run("Cancel", func(t *testing.T) {
		code, loc, _ := c.do("POST", base+"/cancel", url.Values{"csrf": {csrf}})
		if code != http.StatusSeeOther || loc != base+"?done=cancelled" || g.batchStatus(t, id) != notify.BatchCancelled || g.batchCount(t, id, "cancelled") != 27 {
			t.Fatalf("cancel: %d %q", code, loc)
		}
		p := c.mustGet(loc)
		if !strings.Contains(p, `id="batch-status">已取消`) || strings.Contains(p, `id="h-steer"`) || !strings.Contains(p, `id="count-cancelled"><a href="/console/batches/`+page+`?status=cancelled">27<`) {
			t.Fatalf("after cancelling:\n%s", p)
		}
		if list := c.mustGet("/console/batches?status=cancelled"); !strings.Contains(list, `href="/console/batches/`+page+`"`) || strings.Contains(list, `href="/console/batches/`+itoa(big)+`"`) {
			t.Fatalf("the cancelled batches:\n%s", list)
		}
	})
	t.Run("ErrConflict", func(t *testing.T) {
		for _, action := range []string{"pause", "resume", "retry-unknown"} {
			if code, _, p := c.do("POST", base+"/"+action, url.Values{"csrf": {csrf}, "confirm": {"yes"}}); code != http.StatusConflict || !strings.Contains(p, "当前状态不允许") {
				t.Errorf("%s of a cancelled batch: %d", action, code)
			}
		}
		// Cancelling again is no error, and changes nothing.
		if code, _, _ := c.do("POST", base+"/cancel", url.Values{"csrf": {csrf}}); code != http.StatusSeeOther || g.batchCount(t, id, "cancelled") != 27 {
			t.Errorf("cancel of a cancelled batch: %d", code)
		}
	})
	t.Run("ErrQuery", func(t *testing.T) {
		for path, want := range map[string]int{
			"/console/batches/999":                 404,
			"/console/batches/x":                   400,
			base + "?status=lost":                  400,
			base + "?stauts=sent":                  400,
			base + "?cursor=!!":                    400,
			"/console/batches?status=sent":         400,
			"/console/batches?cursor=!!":           400,
			"/console/batches?app=x":               400,
			"/console/batches/" + page + "/pause":  405,
			"/console/batches/" + page + "/delete": 404,
		} {
			if code, _, _ := c.do("GET", path, nil); code != want {
				t.Errorf("GET %s: %d, want %d", path, code, want)
			}
		}
		if code, _, _ := c.do("POST", "/console/batches/999/pause", url.Values{"csrf": {csrf}}); code != 404 {
			t.Errorf("pause of an unknown batch: %d", code)
		}
	})
	t.Run("English", func(t *testing.T) {
		if p := c.mustGet(base, "Accept-Language", "en"); !strings.Contains(p, `id="batch-status">cancelled`) || !strings.Contains(p, "Recipients by outcome") {
			t.Fatal("the batch's page in English")
		}
	})
}

// TestConsole_BatchesOff: without outbound calls there are no batches.
func TestConsole_BatchesOff(t *testing.T) {
	t.Parallel()
	g := newGateway(t)
	c := g.client(t)
	csrf := c.signIn()
	if strings.Contains(c.mustGet("/console/"), "/console/batches") {
		t.Fatal("the navigation offers batches when they are off")
	}
	if code, _, _ := c.do("GET", "/console/batches", nil); code != 404 {
		t.Fatalf("the batches page when off: %d", code)
	}
	if code, _, _ := c.do("POST", "/console/batches/1/cancel", url.Values{"csrf": {csrf}}); code != 404 {
		t.Fatalf("a cancel when off: %d", code)
	}
}

// TestMessages_Batches: the words the batch templates build their keys
// from are in the table.
func TestMessages_Batches(t *testing.T) {
	t.Parallel()
	keys := []string{"nav.batches", "batch.title"}
	for _, s := range []string{notify.BatchRunning, notify.BatchPaused, notify.BatchCancelled, notify.BatchStopped, notify.BatchFinished} {
		keys = append(keys, "batch.status."+s)
	}
	for _, s := range notify.RecipientStatuses() {
		keys = append(keys, "recipient.status."+s)
	}
	for _, s := range []string{notify.StopAuthorizationCancelled, notify.StopAuthorizationExpired, notify.StopTemplateIllegal,
		notify.StopTemplateKeywords, notify.StopInsufficientPermissions, notify.StopAppRefused} {
		keys = append(keys, "stop."+s)
	}
	keys = append(keys, "flash.paused", "flash.resumed", "flash.cancelled", "flash.requeued")
	for _, k := range keys {
		if !console.HasMessage(k) {
			t.Errorf("no message %s in both languages", k)
		}
	}
}

// hrefOf returns the href of the link with id in page.
func hrefOf(t *testing.T, page, id string) string {
	t.Helper()
	i := strings.Index(page, `id="`+id+`"`)
	if i < 0 {
		t.Fatalf("no link %s in the page", id)
	}
	start := strings.LastIndex(page[:i], `href="`)
	end := strings.Index(page[start+6:], `"`)
	return strings.ReplaceAll(page[start+6:start+6+end], "&amp;", "&")
}
