package httpapi_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"mime/multipart"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/alipay-notify-gateway/gateway/internal/batchsend"
	"github.com/alipay-notify-gateway/gateway/internal/notify"
	"github.com/alipay-notify-gateway/gateway/internal/testkit"
	"github.com/alipay-notify-gateway/gateway/internal/view"
)

// batchMaxBytes caps the test gateways' uploads.
const batchMaxBytes = 8 << 20

func newBatchGateway(t *testing.T) *outboundGateway {
	t.Helper()
	return newOutboundGateway(t, func(o *outboundOptions) {
		o.batches = true
		o.cfg.BatchMaxBytes = batchMaxBytes
	})
}

// startSender runs a batch sender of g's service until the test ends, or
// until the function it returns is called.
func (g *outboundGateway) startSender(t *testing.T) (stop func()) {
	t.Helper()
	s := batchsend.New(batchsend.Config{Store: g.db, Bucket: g.db, Outbound: g.svc, Logger: testkit.Logger(t),
		Poll: 50 * time.Millisecond, Concurrency: 8})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); s.Run(ctx) }()
	var once sync.Once
	stop = func() { once.Do(func() { cancel(); <-done }) }
	t.Cleanup(stop)
	return stop
}

// upload posts a batch and returns the status and body.
func (g *outboundGateway) upload(t *testing.T, contentType, query string, body []byte, key string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest("POST", g.srv.URL+"/v1/template-message-batches"+query, bytes.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+opsToken)
	req.Header.Set("Content-Type", contentType)
	if key != "" {
		req.Header.Set("Idempotency-Key", key)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// batchOf decodes a batch view.
func batchOf(t *testing.T, body string) view.TemplateBatch {
	t.Helper()
	var v view.TemplateBatch
	if err := json.Unmarshal([]byte(body), &v); err != nil {
		t.Fatalf("%q: %v", body, err)
	}
	return v
}

// batchErrorOf decodes a batch error.
type batchError struct {
	Code, Reason, Message string
	Rows                  []batchsend.RowError
	Bad                   int `json:"bad_rows"`
}

func batchErrorOf(t *testing.T, body string) batchError {
	t.Helper()
	var b struct{ Error batchError }
	if err := json.Unmarshal([]byte(body), &b); err != nil {
		t.Fatalf("%q: %v", body, err)
	}
	return b.Error
}

// waitBatch waits until batch id has status, and returns it.
func (g *outboundGateway) waitBatch(t *testing.T, id int64, status string) view.TemplateBatch {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		var v view.TemplateBatch
		g.mustGet(t, fmt.Sprintf("/v1/template-message-batches/%d", id), &v)
		if v.Status == status {
			return v
		}
		if time.Now().After(deadline) {
			t.Fatalf("batch %d is %s, not %s: %+v", id, v.Status, status, v)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func users(n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("2088%012d", i+1)
	}
	return out
}

func jsonBatch(ids []string) []byte {
	var b strings.Builder
	b.WriteString(`{"user_template_id":"tpl1","page":"pages/index","data":{"keyword1":{"value":"12:00"}},"recipients":[`)
	for i, id := range ids {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, `{"to_user_id":%q}`, id)
	}
	b.WriteString("]}")
	return []byte(b.String())
}

// queued counts the stored batches and recipients.
func (g *outboundGateway) queued(t *testing.T) int {
	return g.count(t, "template_message_batches") + g.count(t, "template_message_recipients")
}

func TestBatches_Create(t *testing.T) {
	t.Parallel()
	g := newBatchGateway(t)

	t.Run("OKJSON", func(t *testing.T) {
		status, body := g.upload(t, "application/json", "", jsonBatch(users(3)), "")
		v := batchOf(t, body)
		if status != 201 || v.ID == 0 || v.Status != "running" || v.Counts.Total != 3 || v.Counts.Pending != 3 ||
			v.AppID != testkit.AppID || v.UserTemplateID != "tpl1" {
			t.Fatalf("%d %s", status, body)
		}
	})
	t.Run("OKCSV", func(t *testing.T) {
		csv := "\ufeffto_user_id,keyword2,keyword1\n2088100000000001,Shipped,12:00\n\n2088100000000002,\"Out, for delivery\",13:00\n"
		status, body := g.upload(t, "text/csv; charset=utf-8", "?user_template_id=tpl2&page=pages%2Forder&precheck=false", []byte(csv), "")
		v := batchOf(t, body)
		if status != 201 || v.Counts.Total != 2 || v.Page != "pages/order" {
			t.Fatalf("%d %s", status, body)
		}
		var p struct {
			Recipients []view.BatchRecipient
			Next       string
		}
		g.mustGet(t, fmt.Sprintf("/v1/template-message-batches/%d/recipients", v.ID), &p)
		if len(p.Recipients) != 2 || p.Next != "" || p.Recipients[1].Row != 2 || p.Recipients[1].ToUserID != "2088100000000002" ||
			string(p.Recipients[1].Data) != `{"keyword2":{"value":"Out, for delivery"},"keyword1":{"value":"13:00"}}` {
			t.Fatalf("%+v", p)
		}
	})
	// Excel's UTF-8 byte order mark before a quoted header.
	t.Run("OKCSVByteOrderMarkQuoted", func(t *testing.T) {
		csv := "\ufeff\"to_user_id\",\"keyword1\"\n\"2088100000000001\",\"12:00\"\n"
		status, body := g.upload(t, "text/csv", "?user_template_id=tpl2&page=p", []byte(csv), "")
		if v := batchOf(t, body); status != 201 || v.Counts.Total != 1 {
			t.Fatalf("%d %s", status, body)
		}
	})
	t.Run("OKMultipart", func(t *testing.T) {
		var buf bytes.Buffer
		mw := multipart.NewWriter(&buf)
		_ = mw.WriteField("user_template_id", "tpl3")
		_ = mw.WriteField("page", "pages/index")
		_ = mw.WriteField("data", `{"keyword1":{"value":"x"}}`)
		fw, _ := mw.CreateFormFile("file", "recipients.csv")
		_, _ = fw.Write([]byte("to_open_id\n074a1CcTG1LelxKe4xQC0zgNdId0nxi95b5lsNpazWYoCo5\n"))
		_ = mw.Close()
		status, body := g.upload(t, mw.FormDataContentType(), "", buf.Bytes(), "")
		if v := batchOf(t, body); status != 201 || v.Counts.Total != 1 || v.UserTemplateID != "tpl3" {
			t.Fatalf("%d %s", status, body)
		}
	})
}

func TestBatches_CreateRefused(t *testing.T) {
	t.Parallel()
	g := newBatchGateway(t)
	refused := func(t *testing.T, contentType, query string, body []byte, reason string) batchError {
		t.Helper()
		status, out := g.upload(t, contentType, query, body, "")
		e := batchErrorOf(t, out)
		if status != 400 || e.Code != notify.EINVALID || e.Reason != reason {
			t.Fatalf("%d %s; want 400 %s", status, out, reason)
		}
		if n := g.queued(t); n != 0 {
			t.Fatalf("%d rows queued by a refused upload", n)
		}
		return e
	}
	t.Run("ErrRows", func(t *testing.T) {
		body := `{"user_template_id":"tpl","page":"p","data":{"keyword1":{"value":"x"}},"recipients":[
            {"to_user_id":"2088000000000001"},{"to_user_id":"12345"},{"to_user_id":"2088000000000001"},{"nope":1},
            {"to_user_id":"2088000000000004","to_open_id":"abc"},{"to_open_id":"ok-open-id"},
            {"to_open_id":"x","data":{"keyword1":{"value":"` + strings.Repeat("长", 51) + `"}}},{}]}`
		e := refused(t, "application/json", "", []byte(body), "bad_recipients")
		rows := []int{}
		for _, r := range e.Rows {
			rows = append(rows, r.Row)
		}
		if fmt.Sprint(rows) != "[2 3 4 5 7 8]" || e.Bad != 6 || !strings.Contains(e.Rows[1].Error, "row 1") || !strings.Contains(e.Message, "row 2") {
			t.Fatalf("%+v", e)
		}
	})
	t.Run("ErrCSVRows", func(t *testing.T) {
		e := refused(t, "text/csv", "?user_template_id=t&page=p", []byte("to_user_id,data\n2088000000000001,not json\n2088000000000002,\"{\"\"keyword1\"\":{\"\"value\"\":\"\"x\"\"}}\"\n2088000000000003\n"), "bad_recipients")
		if len(e.Rows) != 2 || e.Rows[0].Row != 1 || e.Rows[0].Line != 2 || e.Rows[1].Row != 3 || e.Rows[1].Line != 4 {
			t.Fatalf("%+v", e)
		}
	})
	// A broken quote ends the reading: the row it begins on is named, with
	// its line, and nothing is queued.
	t.Run("ErrCSVQuote", func(t *testing.T) {
		for name, tc := range map[string]struct {
			csv  string
			line int
			err  string
		}{
			"bare":     {"to_user_id\n2088000000000001\n20880\"00000002\n2088000000000003\n", 3, `bare " in non-quoted-field`},
			"unclosed": {"to_user_id\n2088000000000001\n\"2088000000000002\n2088000000000003\n", 3, `extraneous or missing " in quoted-field`},
		} {
			t.Run(name, func(t *testing.T) {
				e := refused(t, "text/csv", "?user_template_id=t&page=p&data="+url.QueryEscape(`{"keyword1":{"value":"x"}}`), []byte(tc.csv), "bad_recipients")
				if len(e.Rows) != 1 || e.Rows[0].Row != 2 || e.Rows[0].Line != tc.line ||
					!strings.Contains(e.Rows[0].Error, "does not parse") || !strings.Contains(e.Rows[0].Error, tc.err) {
					t.Fatalf("%+v", e)
				}
			})
		}
	})
	t.Run("ErrTooMany", func(t *testing.T) {
		e := refused(t, "application/json", "", jsonBatch(users(batchsend.DefaultMaxRecipients+1)), "too_many_recipients")
		if len(e.Rows) != 1 || e.Rows[0].Row != batchsend.DefaultMaxRecipients+1 {
			t.Fatalf("%+v", e)
		}
	})
	t.Run("ErrOversized", func(t *testing.T) {
		body := append(bytes.Repeat([]byte(" "), batchMaxBytes+1), jsonBatch(users(1))...)
		refused(t, "application/json", "", body, "body_too_large")
	})
	t.Run("ErrMalformed", func(t *testing.T) {
		refused(t, "application/json", "", []byte(`{"user_template_id":"t","page":"p","recipients":[`), "bad_json")
		refused(t, "application/json", "", []byte(`{"user_template_id":"t","page":"p","extra":1,"recipients":[]}`), "bad_json")
		refused(t, "application/json", "", []byte(`{"user_template_id":"t","page":"p","recipients":[]}`), "bad_batch")
		refused(t, "application/json", "", []byte(`{"page":"p","data":{"keyword1":{"value":"x"}},"recipients":[{"to_user_id":"2088000000000001"}]}`), "bad_batch")
		refused(t, "text/csv", "?user_template_id=t&page=p", []byte("user,data\n"), "bad_csv")
		refused(t, "text/csv", "?user_template_id=t&page=p", []byte("to_user_id,data,keyword1\n"), "bad_csv")
		refused(t, "text/plain", "", []byte("x"), "bad_content_type")
		refused(t, "text/csv", "?user_template_id=t&page=p&precheck=maybe", []byte("to_user_id\n2088000000000001\n"), "bad_batch")
	})
}

func TestBatches_Idempotency(t *testing.T) {
	t.Parallel()
	g := newBatchGateway(t)
	status, body := g.upload(t, "application/json", "", jsonBatch(users(2)), "campaign-1")
	first := batchOf(t, body)
	if status != 201 || first.Replayed {
		t.Fatalf("%d %s", status, body)
	}
	status, body = g.upload(t, "application/json", "", jsonBatch(users(2)), "campaign-1")
	if again := batchOf(t, body); status != 200 || !again.Replayed || again.ID != first.ID {
		t.Fatalf("replay: %d %s", status, body)
	}
	status, body = g.upload(t, "application/json", "", jsonBatch(users(3)), "campaign-1")
	if e := batchErrorOf(t, body); status != 409 || e.Reason != "idempotency_key_reused" {
		t.Fatalf("reuse: %d %s", status, body)
	}
	if n := g.count(t, "template_message_batches"); n != 1 {
		t.Fatalf("%d batches", n)
	}
}

func TestBatches_SendAndSteer(t *testing.T) {
	t.Parallel()
	g := newBatchGateway(t)
	// Paused before any sender runs: nothing goes out until it resumes.
	_, body := g.upload(t, "application/json", "", jsonBatch(users(5)), "")
	id := batchOf(t, body).ID
	path := fmt.Sprintf("/v1/template-message-batches/%d", id)
	var v view.TemplateBatch
	if code := g.gateway.call(t, "POST", path+"/pause", "", &v); code != 200 || v.Status != "paused" {
		t.Fatalf("pause: %d %+v", code, v)
	}
	stopSender := g.startSender(t)
	time.Sleep(200 * time.Millisecond)
	if n := len(g.sim.Sent()); n != 0 {
		t.Fatalf("%d sent while paused", n)
	}
	if code := g.gateway.call(t, "POST", path+"/resume", "", &v); code != 200 || v.Status != "running" {
		t.Fatalf("resume: %d %+v", code, v)
	}
	v = g.waitBatch(t, id, "finished")
	if v.Counts.Sent != 5 || v.Counts.Pending != 0 || v.FinishedAt == nil || v.ETASeconds != nil || v.RatePerSecond <= 0 {
		t.Fatalf("%+v", v)
	}
	if n := len(g.sim.Sent()); n != 5 {
		t.Fatalf("%d sent", n)
	}
	// Finished: it cannot be resumed, paused or cancelled.
	for _, action := range []string{"pause", "resume", "cancel"} {
		var e struct{ Error batchError }
		if code := g.gateway.call(t, "POST", path+"/"+action, "", &e); code != 409 || e.Error.Reason != "batch_finished" {
			t.Errorf("%s: %d %+v", action, code, e)
		}
	}
	if code := g.gateway.call(t, "POST", "/v1/template-message-batches/999999/pause", "", nil); code != 404 {
		t.Errorf("unknown batch: %d", code)
	}
	// Its event, once, in the feed.
	var page view.EventPage
	g.mustGet(t, "/v1/events?type=template_message_batch.finished", &page)
	if len(page.Items) != 1 || page.Items[0].NotifyID != fmt.Sprintf("template_message_batch:%d", id) {
		t.Fatalf("%+v", page)
	}
	var data notify.BatchEvent
	if err := json.Unmarshal(page.Items[0].Data, &data); err != nil || data.Status != "finished" || data.Counts.Sent != 5 || data.BatchID != id {
		t.Fatalf("%s %v", page.Items[0].Data, err)
	}
	// Listed, filtered, paged; the sender stopped first, so that the second
	// batch's recipient is still pending when it is cancelled.
	stopSender()
	_, body = g.upload(t, "application/json", "", jsonBatch(users(1)), "")
	second := batchOf(t, body).ID
	if code := g.gateway.call(t, "POST", fmt.Sprintf("/v1/template-message-batches/%d/cancel", second), "", &v); code != 200 || v.Status != "cancelled" {
		t.Fatalf("cancel: %d %+v", code, v)
	}
	var list struct {
		Items      []view.TemplateBatch
		NextCursor string `json:"next_cursor"`
	}
	g.mustGet(t, "/v1/template-message-batches?limit=1", &list)
	if len(list.Items) != 1 || list.Items[0].ID != second || list.NextCursor == "" {
		t.Fatalf("%+v", list)
	}
	g.mustGet(t, "/v1/template-message-batches?limit=1&after="+list.NextCursor, &list)
	if len(list.Items) != 1 || list.Items[0].ID != id || list.NextCursor != "" {
		t.Fatalf("%+v", list)
	}
	g.mustGet(t, "/v1/template-message-batches?status=cancelled", &list)
	if len(list.Items) != 1 || list.Items[0].ID != second || list.Items[0].Counts.Cancelled != 1 {
		t.Fatalf("%+v", list)
	}
	var rp struct {
		Recipients []view.BatchRecipient
		Next       string
	}
	g.mustGet(t, path+"/recipients?status=sent&limit=2", &rp)
	if len(rp.Recipients) != 2 || rp.Recipients[0].Row != 1 || rp.Recipients[0].Code != "10000" || rp.Next == "" {
		t.Fatalf("%+v", rp)
	}
	g.mustGet(t, path+"/recipients?status=sent&limit=2&after="+rp.Next, &rp)
	if len(rp.Recipients) != 2 || rp.Recipients[0].Row != 3 {
		t.Fatalf("%+v", rp)
	}
	if code := g.get(t, "GET", path+"/recipients?status=lost", opsToken, nil); code != 400 {
		t.Fatalf("bad status: %d", code)
	}
}
