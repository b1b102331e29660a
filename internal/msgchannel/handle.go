package msgchannel

import (
	"cmp"
	"context"
	"sync"
	"time"

	"github.com/coder/websocket"
	"github.com/rs/zerolog"

	"github.com/alipay-notify-gateway/gateway/internal/intake"
	"github.com/alipay-notify-gateway/gateway/internal/notify"
)

// handle takes one frame: a CONSUME message goes down the intake pipeline
// (verified, stored and applied), then is acknowledged SUCCESS, or FAIL
// when it did not verify or was not stored. Other commands are logged and
// dropped.
func (c *Client) handle(conn *websocket.Conn, msg []byte, start time.Time) {
	f, err := ParseFrame(msg)
	if f != nil && f.Cmd != CmdConsume {
		c.log.Debug().Str("cmd", notify.Clip(f.Cmd)).Str("stream_id", notify.Clip(f.StreamID)).Msg("frame ignored: not a CONSUME message")
		return
	}
	// Bounded by the pipeline, and not cancelled by shutdown until the
	// drain gives up: a committed message is a duplicate on redelivery,
	// never a loss.
	c.cfg.Intake.Deliver(c.inflight.ctx, notify.ChannelWebSocket, start,
		&wsDelivery{c: c, conn: conn, size: len(msg), frame: f, parseErr: err, start: start})
}

// wsDelivery is one CONSUME message on the connection.
type wsDelivery struct {
	c        *Client
	conn     *websocket.Conn
	size     int
	frame    *Frame // nil when not even the header could be read
	parseErr error
	start    time.Time
}

// Receive verifies the message (alipay.Verifier.VerifyChannelMessage).
func (d *wsDelivery) Receive() (*notify.Notification, intake.Named, error) {
	named := intake.Named{AppID: d.c.app}
	if f := d.frame; f != nil {
		named = intake.Named{NotifyID: f.MsgID, AppID: cmp.Or(f.AppID, d.c.app), Method: f.MsgAPI}
	}
	if d.parseErr != nil {
		return nil, named, d.parseErr
	}
	n, err := d.c.cfg.Verifier.VerifyChannelMessage(d.c.app, d.frame.Message(), d.start)
	return n, named, err
}

// Reply acknowledges the message SUCCESS or FAIL (when the frame names a
// message at all), and adds the ack and the frame's stream to the log line.
func (d *wsDelivery) Reply(_ notify.Outcome, err error) (func(*zerolog.Event) *zerolog.Event, error) {
	status := AckSuccess
	if err != nil {
		status = AckFail
	}
	var ackErr error
	if f := d.frame; f != nil && f.MsgID != "" {
		ctx, cancel := context.WithTimeout(context.Background(), d.c.cfg.AckTimeout)
		ackErr = d.conn.Write(ctx, websocket.MessageText, f.Ack(status))
		cancel()
	}
	return func(ev *zerolog.Event) *zerolog.Event {
		ev = ev.Str("remote", d.c.wsBase.Host).Str("ack", status).Int("body_bytes", d.size)
		if d.frame != nil {
			ev = ev.Str("stream_id", notify.Clip(d.frame.StreamID))
		}
		return ev
	}, ackErr
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
