package webhook

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"time"

	"github.com/alipay-notify-gateway/gateway/internal/notify"
	"github.com/alipay-notify-gateway/gateway/internal/stdwebhook"
)

// attempt sends one delivery and says what came of it.
func (w *worker) attempt(ep *notify.Endpoint, keys [][]byte, d notify.Delivery) notify.Attempt {
	cfg := w.d.cfg
	a := notify.Attempt{DeliveryID: d.ID, EndpointID: ep.ID, Attempt: d.Attempt, StartedAt: time.Now()}
	body, err := envelope(d.Event)
	if err != nil {
		a.Error = "the event does not encode: " + err.Error()
		a.Duration = time.Since(a.StartedAt)
		return a
	}
	// An attempt begun is finished (within Timeout) even when w stops.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(w.ctx), cfg.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, ep.URL, bytes.NewReader(body))
	if err != nil {
		a.Error = "bad request: " + err.Error()
		a.Duration = time.Since(a.StartedAt)
		return a
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", cfg.UserAgent)
	stdwebhook.SetHeaders(req.Header, d.Event.ID, a.StartedAt, body, keys...)
	resp, err := cfg.Client.Do(req)
	if err != nil {
		a.Duration = time.Since(a.StartedAt)
		a.Error = failure(err, ctx, cfg.Timeout)
		return a
	}
	head, rerr := io.ReadAll(io.LimitReader(resp.Body, ResponseLimit))
	var rest int64
	if rerr == nil && resp.StatusCode/100 == 2 {
		// A success is an answer that ends: read (and drop) what remains,
		// up to a bound, within the timeout.
		rest, rerr = io.Copy(io.Discard, io.LimitReader(resp.Body, maxAnswer-ResponseLimit+1))
	}
	resp.Body.Close() // what is left, however long, is never read
	a.Duration = time.Since(a.StartedAt)
	a.StatusCode, a.Response = resp.StatusCode, string(head)
	switch {
	case resp.StatusCode < 200 || resp.StatusCode > 299:
		a.Error = "HTTP " + strconv.Itoa(resp.StatusCode)
		if loc := resp.Header.Get("Location"); resp.StatusCode/100 == 3 && loc != "" {
			a.Error += " to " + notify.Clip(loc) + " (redirects are not followed)"
		}
	case rerr != nil:
		a.Error = "HTTP " + strconv.Itoa(resp.StatusCode) + ", but the answer broke off: " + failure(rerr, ctx, cfg.Timeout)
	case ResponseLimit+rest > maxAnswer:
		a.Error = fmt.Sprintf("HTTP %d, but the answer goes on past %d KiB", resp.StatusCode, maxAnswer>>10)
	default:
		a.OK = true
	}
	return a
}

// maxAnswer is the longest answer a successful attempt may have: a
// receiver whose answer goes on (an endless body) has not answered.
const maxAnswer = 64 << 10

// failure names a transport error.
func failure(err error, ctx context.Context, timeout time.Duration) string {
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		return fmt.Sprintf("no answer within %s", timeout)
	}
	return notify.Clip(err.Error())
}

// envelope is the body of a delivery: the event as JSON, its data spliced
// in as stored (it is JSON already: re-encoding it would cost as much as
// the rest of the attempt's work in the gateway).
func envelope(e notify.StoredEvent) ([]byte, error) {
	data := e.Data
	e.Data = nil
	head, err := json.Marshal(struct {
		ID         string     `json:"id"`
		Type       string     `json:"type"`
		Timestamp  time.Time  `json:"timestamp"`
		AppID      string     `json:"app_id"`
		NotifyID   string     `json:"notify_id"`
		OccurredAt *time.Time `json:"occurred_at"`
	}{e.ID, e.Type, e.Timestamp, e.AppID, e.NotifyID, e.OccurredAt})
	if err != nil {
		return nil, err
	}
	if len(data) == 0 {
		data = json.RawMessage("null")
	}
	body := make([]byte, 0, len(head)+len(data)+9)
	body = append(body, head[:len(head)-1]...)
	body = append(body, `,"data":`...)
	body = append(body, data...)
	return append(body, '}'), nil
}
