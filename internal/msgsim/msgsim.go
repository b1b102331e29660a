// Package msgsim simulates Alipay's side of the message service's WebSocket
// channel, for tests and `make demo`: the register endpoint
// (/websocket/register.do) and the WebSocket server (/websocket).
//
// It checks what a client must get right: the app's signature over the
// register and connect parameters (sorted k=v& over every parameter but
// sign, sign_type included, SHA256withRSA with the app key), a fresh
// timestamp and nonce, a link token used once, and the zone cookie sent
// back. It signs its register answer (over the exact text of "response")
// and every message (over the exact text of "data") with the platform key,
// the one the app's configuration knows as the Alipay public key.
//
// Delivery is at least once, as Alipay's: a message is sent again when it
// is not acknowledged within AckTimeout, RetryAfter after a FAIL, and on
// every new connection of its app until it is acknowledged SUCCESS. Tests
// drive it with Deliver, DeliverForged, DropConnections and
// RefuseRegistrations, and read Acks; Control exposes the same over HTTP
// for the cmd/msgsim binary.
package msgsim

import (
	"context"
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/coder/websocket"
	"github.com/rs/zerolog"

	"github.com/alipay-notify-gateway/gateway/internal/msgchannel"
)

// Config is the simulator's settings.
type Config struct {
	// Apps maps each app id to the app's public key, which checks the
	// app's signatures.
	Apps map[string]*rsa.PublicKey
	// PlatformKey signs what the simulator sends: Alipay's key.
	PlatformKey *rsa.PrivateKey
	// AckTimeout is how long a sent message may go unacknowledged before
	// it is sent again (default 10 s); RetryAfter is the wait after a FAIL
	// (default 1 s).
	AckTimeout time.Duration
	RetryAfter time.Duration
	// TokenTTL bounds a link token's life (default 1 min); ClockSkew the
	// accepted distance of a request's timestamp from now (default 10 min).
	TokenTTL  time.Duration
	ClockSkew time.Duration
	Logger    zerolog.Logger
}

// Ack is one acknowledgement received.
type Ack struct {
	AppID    string    `json:"app_id"`
	MsgID    string    `json:"msg_id"`
	Status   string    `json:"status"`
	StreamID string    `json:"stream_id"`
	At       time.Time `json:"at"`
	// StreamOK reports that the ack's stream-id is one the message was
	// sent with.
	StreamOK bool `json:"stream_ok"`
}

type message struct {
	app     string
	id      string
	msg     []byte // the JSON message; a fresh stream-id per send
	forged  bool
	streams map[string]bool
	sends   int
	conn    *simConn // sent on this connection last
	sentAt  time.Time
	failAt  time.Time // last FAIL, if after sentAt
	done    bool      // acknowledged SUCCESS (or a forged one acknowledged)
}

type simConn struct {
	app string
	c   *websocket.Conn
}

type token struct {
	app     string
	zone    string
	expires time.Time
}

// Server is the simulator. Its zero value is not usable: call New.
type Server struct {
	cfg  Config
	log  zerolog.Logger
	mux  *http.ServeMux
	kick chan struct{}
	stop chan struct{}
	wg   sync.WaitGroup

	mu            sync.Mutex
	conns         map[string][]*simConn
	connects      map[string]int
	registrations map[string]int
	refuse        map[string]int
	mute          map[string]bool
	tokens        map[string]token
	nonces        map[string]time.Time
	messages      []*message
	acks          []Ack
	changed       chan struct{} // closed and replaced on every state change
	violations    []string
	seq           int
	closed        bool
}

// New returns a running simulator; Close stops it.
func New(cfg Config) *Server {
	if cfg.AckTimeout <= 0 {
		cfg.AckTimeout = 10 * time.Second
	}
	if cfg.RetryAfter <= 0 {
		cfg.RetryAfter = time.Second
	}
	if cfg.TokenTTL <= 0 {
		cfg.TokenTTL = time.Minute
	}
	if cfg.ClockSkew <= 0 {
		cfg.ClockSkew = 10 * time.Minute
	}
	s := &Server{
		cfg:           cfg,
		log:           cfg.Logger,
		mux:           http.NewServeMux(),
		kick:          make(chan struct{}, 1),
		stop:          make(chan struct{}),
		conns:         map[string][]*simConn{},
		connects:      map[string]int{},
		registrations: map[string]int{},
		refuse:        map[string]int{},
		mute:          map[string]bool{},
		tokens:        map[string]token{},
		nonces:        map[string]time.Time{},
		changed:       make(chan struct{}),
	}
	s.mux.HandleFunc("GET /websocket/register.do", s.handleRegister)
	s.mux.HandleFunc("GET /websocket", s.handleConnect)
	s.wg.Add(1)
	go s.deliveryLoop()
	return s
}

// ServeHTTP serves the register endpoint and the WebSocket.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) { s.mux.ServeHTTP(w, r) }

// Close drops every connection and stops redelivering.
func (s *Server) Close() {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return
	}
	s.closed = true
	var all []*simConn
	for _, cs := range s.conns {
		all = append(all, cs...)
	}
	s.mu.Unlock()
	close(s.stop)
	for _, c := range all {
		_ = c.c.CloseNow()
	}
	s.wg.Wait()
}

// notifyLocked wakes the waiters on a state change. s.mu must be held.
func (s *Server) notifyLocked() {
	close(s.changed)
	s.changed = make(chan struct{})
}

func (s *Server) violation(format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	s.log.Warn().Str("violation", msg).Msg("msgsim: client broke the protocol")
	s.mu.Lock()
	s.violations = append(s.violations, msg)
	s.notifyLocked()
	s.mu.Unlock()
}

// Violations returns the protocol violations seen on acknowledgements (an
// unknown stream-id, a malformed ack).
func (s *Server) Violations() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.violations...)
}

// RefuseRegistrations makes the next n registrations of appID fail with
// Alipay's "service unavailable" answer.
func (s *Server) RefuseRegistrations(appID string, n int) {
	s.mu.Lock()
	s.refuse[appID] = n
	s.mu.Unlock()
}

// MutePings makes appID's connections stop answering pings (mute true), as
// a peer that is gone without a word, or answer them again.
func (s *Server) MutePings(appID string, mute bool) {
	s.mu.Lock()
	s.mute[appID] = mute
	s.mu.Unlock()
}

// DropConnections closes appID's connections without a close handshake, as
// a network loss would, and returns how many there were.
func (s *Server) DropConnections(appID string) int {
	s.mu.Lock()
	cs := s.conns[appID]
	s.mu.Unlock()
	for _, c := range cs {
		_ = c.c.CloseNow()
	}
	return len(cs)
}

// Connections returns how many connections appID has open now.
func (s *Server) Connections(appID string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.conns[appID])
}

// Connects returns how many connections appID has opened in all.
func (s *Server) Connects(appID string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.connects[appID]
}

// Registrations returns how many registrations of appID succeeded.
func (s *Server) Registrations(appID string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.registrations[appID]
}

// Acks returns every acknowledgement received, in order.
func (s *Server) Acks() []Ack {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Ack(nil), s.acks...)
}

// AcksOf returns the acknowledgements of one message, in order.
func (s *Server) AcksOf(appID, msgID string) []Ack {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []Ack
	for _, a := range s.acks {
		if a.AppID == appID && a.MsgID == msgID {
			out = append(out, a)
		}
	}
	return out
}

// Sends returns how many times a message was sent.
func (s *Server) Sends(appID, msgID string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, m := range s.messages {
		if m.app == appID && m.id == msgID {
			n += m.sends
		}
	}
	return n
}

// Pending returns the ids of appID's messages not yet acknowledged
// SUCCESS.
func (s *Server) Pending(appID string) []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []string
	for _, m := range s.messages {
		if m.app == appID && !m.done {
			out = append(out, m.id)
		}
	}
	return out
}

// Wait waits until cond, called with the simulator locked, holds, or ctx
// ends.
func (s *Server) wait(ctx context.Context, cond func() bool) error {
	for {
		s.mu.Lock()
		ok := cond()
		ch := s.changed
		s.mu.Unlock()
		if ok {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-ch:
		}
	}
}

// WaitAck waits for an acknowledgement of msgID with status (AckSuccess or
// AckFail) and returns it.
func (s *Server) WaitAck(ctx context.Context, appID, msgID, status string) (Ack, error) {
	var got Ack
	err := s.wait(ctx, func() bool {
		for _, a := range s.acks {
			if a.AppID == appID && a.MsgID == msgID && a.Status == status {
				got = a
				return true
			}
		}
		return false
	})
	if err != nil {
		return Ack{}, fmt.Errorf("no %s ack of %s/%s: %w (acks: %v)", status, appID, msgID, err, s.AcksOf(appID, msgID))
	}
	return got, nil
}

// WaitConnects waits until appID has opened n connections in all and one
// is open.
func (s *Server) WaitConnects(ctx context.Context, appID string, n int) error {
	err := s.wait(ctx, func() bool { return s.connects[appID] >= n && len(s.conns[appID]) > 0 })
	if err != nil {
		return fmt.Errorf("app %s: %d connections, want %d: %w", appID, s.Connects(appID), n, err)
	}
	return nil
}

// WaitIdle waits until every message of appID is acknowledged SUCCESS.
func (s *Server) WaitIdle(ctx context.Context, appID string) error {
	err := s.wait(ctx, func() bool {
		for _, m := range s.messages {
			if m.app == appID && !m.done {
				return false
			}
		}
		return true
	})
	if err != nil {
		return fmt.Errorf("app %s: pending %v: %w", appID, s.Pending(appID), err)
	}
	return nil
}

// Deliver queues a CONSUME message for appID, signed with the platform
// key, and sends it at once when the app is connected. content is the JSON
// object of data.content, sent as it is; ts is x-timestamp in ms (0: now).
// A message id already delivered is delivered again as a new delivery.
func (s *Server) Deliver(appID, msgAPI, content, msgID string, ts int64) error {
	return s.deliver(appID, msgAPI, content, msgID, ts, false)
}

// DeliverForged sends, once, a message whose x-sign does not sign its data
// (it signs different bytes with the platform key), as an attacker in the
// middle could. It is never redelivered.
func (s *Server) DeliverForged(appID, msgAPI, content, msgID string, ts int64) error {
	return s.deliver(appID, msgAPI, content, msgID, ts, true)
}

func (s *Server) deliver(appID, msgAPI, content, msgID string, ts int64, forged bool) error {
	if !json.Valid([]byte(content)) || len(content) == 0 || content[0] != '{' {
		return errors.New("msgsim: content is not a JSON object")
	}
	if msgID == "" {
		msgID = randomHex(16)
	}
	if ts == 0 {
		ts = time.Now().UnixMilli()
	}
	msg, err := s.Message(appID, msgAPI, content, msgID, ts, forged)
	if err != nil {
		return err
	}
	s.mu.Lock()
	s.messages = append(s.messages, &message{app: appID, id: msgID, msg: msg, forged: forged, streams: map[string]bool{}})
	s.notifyLocked()
	s.mu.Unlock()
	s.wake()
	return nil
}

// Message returns the JSON message of a CONSUME of content, signed with
// the platform key (over other bytes when forged).
func (s *Server) Message(appID, msgAPI, content, msgID string, ts int64, forged bool) ([]byte, error) {
	data := `{"header":{"appId":` + quote(appID) + `,"msgApi":` + quote(msgAPI) + `},"content":` + content + `}`
	signed := data
	if forged {
		signed = data + " "
	}
	sig, err := s.sign([]byte(signed))
	if err != nil {
		return nil, err
	}
	return []byte(`{"protocol":{"x-type":"message","x-cmd":"CONSUME","x-msgId":` + quote(msgID) +
		`,"x-timestamp":"` + strconv.FormatInt(ts, 10) + `","x-version":"1.0","x-charset":"UTF-8","x-signType":"RSA2","x-sign":"` +
		sig + `"},"data":` + data + `}`), nil
}

func (s *Server) sign(b []byte) (string, error) {
	d := sha256.Sum256(b)
	sig, err := rsa.SignPKCS1v15(nil, s.cfg.PlatformKey, crypto.SHA256, d[:])
	if err != nil {
		return "", err
	}
	return base64.StdEncoding.EncodeToString(sig), nil
}

func quote(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

func (s *Server) wake() {
	select {
	case s.kick <- struct{}{}:
	default:
	}
}

// deliveryLoop sends what is due: messages never sent on the app's newest
// connection, unacknowledged past AckTimeout, or FAILed RetryAfter ago.
func (s *Server) deliveryLoop() {
	defer s.wg.Done()
	tick := min(s.cfg.AckTimeout, s.cfg.RetryAfter) / 4
	tick = max(tick, 10*time.Millisecond)
	t := time.NewTicker(tick)
	defer t.Stop()
	for {
		select {
		case <-s.stop:
			return
		case <-s.kick:
		case <-t.C:
		}
		s.sendDue()
	}
}

type send struct {
	m      *message
	conn   *simConn
	frame  []byte
	stream string
}

func (s *Server) sendDue() {
	now := time.Now()
	var due []send
	s.mu.Lock()
	for _, m := range s.messages {
		cs := s.conns[m.app]
		if m.done || len(cs) == 0 || (m.forged && m.sends > 0) {
			continue
		}
		conn := cs[len(cs)-1]
		failed := !m.failAt.IsZero() && now.Sub(m.failAt) >= s.cfg.RetryAfter
		timedOut := m.failAt.IsZero() && now.Sub(m.sentAt) >= s.cfg.AckTimeout
		if m.conn == conn && !failed && !timedOut {
			continue
		}
		s.seq++
		stream := "sim" + strconv.Itoa(s.seq)
		m.streams[stream] = true
		m.sends++
		m.conn, m.sentAt, m.failAt = conn, now, time.Time{}
		due = append(due, send{m: m, conn: conn, stream: stream,
			frame: msgchannel.EncodeFrame(stream, "msgsim", "127.0.0.1", m.msg)})
	}
	if len(due) > 0 {
		s.notifyLocked()
	}
	s.mu.Unlock()
	for _, d := range due {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		err := d.conn.c.Write(ctx, websocket.MessageText, d.frame)
		cancel()
		ev := s.log.Debug()
		if err != nil {
			ev = s.log.Warn().Err(err)
		}
		ev.Str("app_id", d.m.app).Str("msg_id", d.m.id).Str("stream_id", d.stream).Int("send", d.m.sends).Msg("msgsim: message sent")
	}
}

// onAck records an acknowledgement read on appID's connection.
func (s *Server) onAck(appID string, f *msgchannel.Frame) {
	if f.Status != msgchannel.AckSuccess && f.Status != msgchannel.AckFail {
		s.violation("ack of %s with x-status %q", f.MsgID, f.Status)
	}
	if f.Version != "1.0" {
		s.violation("ack of %s with x-version %q, not the Java SDK's 1.0", f.MsgID, f.Version)
	}
	s.mu.Lock()
	ack := Ack{AppID: appID, MsgID: f.MsgID, Status: f.Status, StreamID: f.StreamID, At: time.Now()}
	var found *message
	for _, m := range s.messages {
		if m.app == appID && m.id == f.MsgID && m.streams[f.StreamID] {
			found = m
		}
	}
	ack.StreamOK = found != nil
	s.acks = append(s.acks, ack)
	if found != nil {
		switch {
		case f.Status == msgchannel.AckSuccess || found.forged:
			found.done = true
		default:
			found.failAt = time.Now()
		}
	}
	s.notifyLocked()
	s.mu.Unlock()
	if found == nil {
		s.violation("ack of %s/%s with stream-id %q that it was not sent with", appID, f.MsgID, f.StreamID)
	}
}
