// Package intake is the one path a notification takes, whatever channel
// brought it: read and verified by the channel's adapter, decided by the
// registry (what it does to business state), stored and applied in one
// transaction by the inbox, and only then answered, counted and logged in
// one line. A channel (internal/httpapi for POST /alipay/notify,
// internal/msgchannel for the WebSocket) keeps only its wire format: it
// implements Delivery, and calls Pipeline.Deliver.
package intake

import (
	"context"
	"time"

	"github.com/rs/zerolog"

	"github.com/alipay-notify-gateway/gateway/internal/notify"
)

// Config is what a Pipeline needs.
type Config struct {
	// Registry decides what a verified notification does.
	Registry *notify.Registry
	// Inbox stores and applies decided notifications (the group-commit
	// Batcher).
	Inbox notify.Inbox
	// Arrivals, when set, is told of each delivery while it is read and
	// verified (the Batcher, so that a batch waits only for notifications
	// that are coming).
	Arrivals notify.Arrivals
	// Metrics receives each delivery's figures; nil reports nothing.
	Metrics Reporter
	Logger  zerolog.Logger
	// Timeout bounds the inbox's work for one notification; 15 s when
	// zero.
	Timeout time.Duration

	// Store and Redecode serve Reprocess: the store that keeps the
	// notifications, and the verifier's decoding of an encrypted
	// biz_content with the current keys (alipay.Verifier.Redecode).
	Store    ReprocessStore
	Redecode func(*notify.Notification)
}

// Reporter is what the pipeline tells about each delivery (metrics.Metrics).
type Reporter interface {
	Intake(channel string, d time.Duration)
	Refused(reason string)
	Accepted(method, outcome string)
}

// Delivery is one notification as a channel received it.
type Delivery interface {
	// Receive reads and verifies it. It returns the notification, or the
	// error that refuses it (a *notify.Error: the channel's answer and the
	// metric's reason come from its code and reason), and in both cases
	// what could be read of it, for the log line.
	Receive() (*notify.Notification, Named, error)
	// Reply answers the sender: success when err is nil, fail with err
	// otherwise. It returns what the channel adds to the log line (its
	// status, the sender, ...), and the error of the answer itself when it
	// could not be sent.
	Reply(out notify.Outcome, err error) (fields func(*zerolog.Event) *zerolog.Event, replyErr error)
}

// Named is what a delivery says of itself, verified or not: for the log
// line of one that is refused before it is a notification.
type Named struct {
	NotifyID, AppID, Method string
	ContentForm, CertSN     string // how it verified, when it did
}

// Pipeline delivers notifications. It is safe for concurrent use.
type Pipeline struct {
	cfg    Config
	log    zerolog.Logger
	outage zerolog.Logger // for refusals while the database is unavailable
}

// New returns a Pipeline for cfg.
func New(cfg Config) *Pipeline {
	if cfg.Timeout <= 0 {
		cfg.Timeout = 15 * time.Second
	}
	if cfg.Metrics == nil {
		cfg.Metrics = nopReporter{}
	}
	return &Pipeline{cfg: cfg, log: cfg.Logger, outage: OutageLogger(cfg.Logger)}
}

// Deliver takes one delivery that arrived on channel at start: receives it
// (counted by Config.Arrivals meanwhile), decides it, stores and applies it
// within ctx and the pipeline's timeout, and only then has it answered;
// then counts it and writes its one log line. ctx must outlive the sender:
// a committed notification is a duplicate on resend, never a loss, so its
// store work goes on if the sender hangs up.
func (p *Pipeline) Deliver(ctx context.Context, channel string, start time.Time, d Delivery) {
	n, named, err := p.receive(d)
	var out notify.Outcome
	if err == nil {
		out, err = p.store(ctx, n)
	}
	fields, replyErr := d.Reply(out, err)
	took := time.Since(start)
	if err != nil {
		p.cfg.Metrics.Refused(notify.ErrorReason(err))
	} else {
		p.cfg.Metrics.Accepted(n.Method, out.Label())
	}
	p.cfg.Metrics.Intake(channel, took)
	if n != nil {
		named = Named{NotifyID: n.NotifyID, AppID: n.AppID, Method: n.Method, ContentForm: n.ContentForm, CertSN: n.CertSN}
	}
	p.logLine(channel, named, out, err, fields, replyErr, took)
}

// receive reads and verifies d, counted by Config.Arrivals while it does.
func (p *Pipeline) receive(d Delivery) (*notify.Notification, Named, error) {
	if a := p.cfg.Arrivals; a != nil {
		a.Arriving()
		defer a.Arrived()
	}
	return d.Receive()
}

// store decides n and has the inbox store and apply it. It returns the
// error of a handler that refuses n, with an internal one for a handler
// that fails, and the inbox's errors.
func (p *Pipeline) store(ctx context.Context, n *notify.Notification) (notify.Outcome, error) {
	dec, err := p.cfg.Registry.Decide(n)
	if err != nil {
		return notify.Outcome{}, err
	}
	ctx, cancel := context.WithTimeout(ctx, p.cfg.Timeout)
	defer cancel()
	return p.cfg.Inbox.Ingest(ctx, dec)
}

type nopReporter struct{}

func (nopReporter) Intake(string, time.Duration) {}
func (nopReporter) Refused(string)               {}
func (nopReporter) Accepted(string, string)      {}
