package httpapi

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"net/http"
	"time"

	"github.com/rs/zerolog"

	"github.com/alipay-notify-gateway/gateway/internal/alipay"
	"github.com/alipay-notify-gateway/gateway/internal/notify"
)

// handleNotify is Alipay's application gateway: read the body (within the
// limit), verify, store and apply in one transaction, and answer success
// only after its commit.
func (s *Server) handleNotify(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	var out notify.Outcome
	body, f, n, m, err := s.receive(w, r, start)
	if err == nil {
		// The store's work goes on if Alipay hangs up: a committed
		// notification is a duplicate on resend, never a loss.
		ctx, cancel := context.WithTimeout(context.WithoutCancel(r.Context()), s.cfg.IngestTimeout)
		out, err = s.cfg.Inbox.Ingest(ctx, n)
		cancel()
	}
	status := replyAlipay(w, err)
	took := time.Since(start)
	notify.Report(s.cfg.Metrics, notify.ChannelHTTP, n, out, err, took)
	log := s.log
	if notify.ErrorCode(err) == notify.EUNAVAILABLE {
		log = s.outage
	}
	logNotification(log, r, len(body), f, n, m, out, err, status, took)
}

// receive reads and verifies a notification, counted by Config.Arrivals
// while it does.
func (s *Server) receive(w http.ResponseWriter, r *http.Request, start time.Time) ([]byte, alipay.Form, *notify.Notification, *alipay.Match, error) {
	if a := s.cfg.Arrivals; a != nil {
		a.Arriving()
		defer a.Arrived()
	}
	body, err := readBody(w, r, s.cfg.MaxBodyBytes)
	if err != nil {
		return body, nil, nil, nil, err
	}
	f, err := alipay.ParseForm(body)
	if err != nil {
		return body, nil, nil, nil, err
	}
	n, m, err := s.cfg.Verifier.FormNotification(f, notify.ChannelHTTP, start)
	return body, f, n, m, err
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

// logNotification writes the one line a delivery gets. It never logs sign,
// tokens or keys: only identifiers, the outcome and why.
func logNotification(log zerolog.Logger, r *http.Request, bodyLen int, f alipay.Form, n *notify.Notification, m *alipay.Match,
	out notify.Outcome, err error, status int, took time.Duration) {
	ev := log.Info()
	if err != nil || out.ReplayOf != "" || out.Foreign {
		ev = log.Warn()
		if status >= 500 {
			ev = log.Error()
		}
	}
	ev = ev.Str("channel", notify.ChannelHTTP).Str("remote", r.RemoteAddr).Int("status_code", status).
		Dur("duration", took).Int("body_bytes", bodyLen)
	if n != nil {
		ev = ev.Str("notify_id", n.NotifyID).Str("app_id", n.AppID).Str("msg_method", n.Method)
	} else if f != nil {
		// Refused before it was a notification: name it as far as it can be.
		// Unverified values: clipped, so that a forged request cannot make a
		// log line of its size.
		ev = ev.Str("notify_id", notify.Clip(f[alipay.ParamNotifyID])).Str("app_id", notify.Clip(f[alipay.ParamAppID])).
			Str("msg_method", notify.Clip(cmp.Or(f[alipay.ParamMsgMethod], f[alipay.ParamNotifyType])))
	}
	if m != nil {
		ev = ev.Str("content_form", m.Form.Name)
		if m.CertSN != "" {
			ev = ev.Str("cert_sn", m.CertSN)
		}
	}
	notify.LogOutcome(ev, out, err)
}
