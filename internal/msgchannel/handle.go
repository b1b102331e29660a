package msgchannel

import (
	"cmp"
	"context"
	"sync"
	"time"

	"github.com/coder/websocket"

	"github.com/alipay-notify-gateway/gateway/internal/notify"
)

// handle takes one frame: a CONSUME message is verified, stored and
// applied, then acknowledged SUCCESS, or FAIL when it did not verify or was
// not stored. Other commands are logged and dropped.
func (c *Client) handle(conn *websocket.Conn, msg []byte, start time.Time) {
	n, f, err := c.receive(msg, start)
	if f != nil && f.Cmd != CmdConsume {
		c.log.Debug().Str("cmd", notify.Clip(f.Cmd)).Str("stream_id", notify.Clip(f.StreamID)).Msg("frame ignored: not a CONSUME message")
		return
	}
	var out notify.Outcome
	if err == nil {
		// Bounded, and not cancelled by shutdown until the drain gives up:
		// a committed message is a duplicate on redelivery, never a loss.
		ctx, cancel := context.WithTimeout(c.inflight.ctx, c.cfg.IngestTimeout)
		out, err = c.cfg.Inbox.Ingest(ctx, n)
		cancel()
	}
	status := AckSuccess
	if err != nil {
		status = AckFail
	}
	var ackErr error
	if f != nil && f.MsgID != "" {
		ctx, cancel := context.WithTimeout(context.Background(), c.cfg.AckTimeout)
		ackErr = conn.Write(ctx, websocket.MessageText, f.Ack(status))
		cancel()
	}
	took := c.cfg.Now().Sub(start)
	notify.Report(c.cfg.Metrics, notify.ChannelWebSocket, n, out, err, took)
	c.logMessage(msg, n, f, out, err, status, ackErr, took)
}

// receive verifies a frame, counted by Config.Arrivals while it does.
func (c *Client) receive(msg []byte, start time.Time) (*notify.Notification, *Frame, error) {
	if a := c.cfg.Arrivals; a != nil {
		a.Arriving()
		defer a.Arrived()
	}
	f, err := ParseFrame(msg)
	if err != nil {
		return nil, f, err
	}
	if f.Cmd != CmdConsume {
		return nil, f, nil // not a message: handle ignores it
	}
	n, err := c.cfg.Verifier.VerifyChannelMessage(c.app, f.Message(), start)
	return n, f, err
}

// logMessage writes the one line a message gets, with the HTTP intake's
// fields. It never logs x-sign, tokens or keys.
func (c *Client) logMessage(msg []byte, n *notify.Notification, f *Frame, out notify.Outcome,
	err error, ack string, ackErr error, took time.Duration) {
	log := c.cfg.Logger
	if notify.ErrorCode(err) == notify.EUNAVAILABLE {
		log = c.outage
	}
	ev := log.Info()
	if err != nil || ackErr != nil || out.ReplayOf != "" || out.Foreign {
		ev = log.Warn()
		if notify.ErrorCode(err) == notify.EUNAVAILABLE || notify.ErrorCode(err) == notify.EINTERNAL {
			ev = log.Error()
		}
	}
	ev = ev.Str("channel", notify.ChannelWebSocket).Str("remote", c.wsBase.Host).Str("ack", ack).
		Dur("duration", took).Int("body_bytes", len(msg))
	switch {
	case n != nil:
		ev = ev.Str("notify_id", n.NotifyID).Str("app_id", n.AppID).Str("msg_method", n.Method)
	case f != nil:
		// Refused before it was a notification: name it as far as it can be.
		// Unverified values: clipped, so that a forged frame cannot make a
		// log line of its size.
		ev = ev.Str("notify_id", notify.Clip(f.MsgID)).Str("app_id", notify.Clip(cmp.Or(f.AppID, c.app))).
			Str("msg_method", notify.Clip(f.MsgAPI))
	default:
		ev = ev.Str("app_id", c.app)
	}
	if f != nil {
		ev = ev.Str("stream_id", notify.Clip(f.StreamID))
	}
	if n != nil {
		ev = ev.Str("content_form", n.ContentForm)
		if n.CertSN != "" {
			ev = ev.Str("cert_sn", n.CertSN)
		}
	}
	if ackErr != nil {
		ev = ev.AnErr("ack_error", ackErr)
	}
	notify.LogOutcome(ev, out, err)
}

// inflight counts the messages being processed, so that a close can wait
// for them; once closed it takes no more. Its ctx bounds their store work,
// cancelled only when waiting for them gave up.
type inflight struct {
	ctx    context.Context
	cancel context.CancelFunc

	mu     sync.Mutex
	n      int
	closed bool
	idle   chan struct{} // closed when n falls to 0, if someone waits
}

func (f *inflight) init() {
	f.ctx, f.cancel = context.WithCancel(context.Background())
}

// add counts one more message, or returns false once closed.
func (f *inflight) add() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed {
		return false
	}
	f.n++
	return true
}

func (f *inflight) done() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.n--
	if f.n == 0 && f.idle != nil {
		close(f.idle)
		f.idle = nil
	}
}

// closeAndWait stops counting new messages and waits until none is in
// flight, at most timeout (no limit when timeout <= 0). It reports whether
// none is.
func (f *inflight) closeAndWait(timeout time.Duration) bool {
	f.mu.Lock()
	f.closed = true
	if f.n == 0 {
		f.mu.Unlock()
		return true
	}
	if f.idle == nil {
		f.idle = make(chan struct{})
	}
	idle := f.idle
	f.mu.Unlock()
	if timeout <= 0 {
		<-idle
		return true
	}
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case <-idle:
		return true
	case <-t.C:
		return false
	}
}
