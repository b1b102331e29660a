package httpapi

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"time"

	"github.com/rs/zerolog"

	"github.com/alipay-notify-gateway/gateway/internal/alipay"
	"github.com/alipay-notify-gateway/gateway/internal/intake"
	"github.com/alipay-notify-gateway/gateway/internal/notify"
)

// handleNotify is Alipay's application gateway: its wire format over the
// intake pipeline. The body is read within the limit and verified, and the
// answer is the word success (only once the notification is committed) or
// fail with the status of the error (reply.go).
func (s *Server) handleNotify(w http.ResponseWriter, r *http.Request) {
	// The store's work goes on if Alipay hangs up: a committed notification
	// is a duplicate on resend, never a loss.
	start := time.Now()
	s.cfg.Intake.Deliver(context.WithoutCancel(r.Context()), notify.ChannelHTTP, start, &httpDelivery{s: s, w: w, r: r, start: start})
}

// httpDelivery is one POST of a notification.
type httpDelivery struct {
	s     *Server
	w     http.ResponseWriter
	r     *http.Request
	start time.Time // when it arrived: the notification's received_at
	size  int       // of the body read
}

// Receive reads the body and verifies it (alipay.Verifier.FormNotification).
func (d *httpDelivery) Receive() (*notify.Notification, intake.Named, error) {
	body, err := readBody(d.w, d.r, d.s.cfg.MaxBodyBytes)
	d.size = len(body)
	if err != nil {
		return nil, intake.Named{}, err
	}
	f, err := alipay.ParseForm(body)
	if err != nil {
		return nil, intake.Named{}, err
	}
	// Refused before it was a notification: named as far as it can be.
	named := intake.Named{NotifyID: f[alipay.ParamNotifyID], AppID: f[alipay.ParamAppID], Method: f.Method()}
	n, _, err := d.s.cfg.Verifier.FormNotification(f, notify.ChannelHTTP, d.start)
	return n, named, err
}

// Reply answers success or fail, and adds the request's status, sender and
// size to the log line.
func (d *httpDelivery) Reply(_ notify.Outcome, err error) (func(*zerolog.Event) *zerolog.Event, error) {
	status := replyAlipay(d.w, err)
	return func(ev *zerolog.Event) *zerolog.Event {
		return ev.Str("remote", d.r.RemoteAddr).Int("status_code", status).Int("body_bytes", d.size)
	}, nil
}

// readBody reads at most limit bytes of the body. It returns an ETOOLARGE
// *notify.Error for a larger body.
func readBody(w http.ResponseWriter, r *http.Request, limit int64) ([]byte, error) {
	if r.ContentLength > limit {
		return nil, notify.Errorf(notify.ETOOLARGE, "body_too_large", "body over %d bytes", limit)
	}
	buf := bytes.NewBuffer(make([]byte, 0, max(r.ContentLength, 0)+bytes.MinRead))
	_, err := buf.ReadFrom(http.MaxBytesReader(w, r.Body, limit))
	body := buf.Bytes()
	var tooLarge *http.MaxBytesError
	switch {
	case errors.As(err, &tooLarge):
		return nil, notify.Errorf(notify.ETOOLARGE, "body_too_large", "body over %d bytes", limit)
	case err != nil:
		return nil, notify.Errorf(notify.EINVALID, "unreadable_body", "body could not be read: %v", err)
	}
	return body, nil
}
