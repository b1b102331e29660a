// Package msgchannel is the client of the WebSocket channel (长连接) of
// Alipay's message service: instead of posting notifications to a public
// gateway URL, Alipay pushes them over a WebSocket the gateway opens.
//
// One Client serves one app: it registers (a signed GET of
// /websocket/register.do that answers a signed link_token and a zone
// cookie), connects (wss://HOST/websocket?..., signed too), pings every 2 s,
// and reconnects, registering again, after any loss: at once, then after
// 5 s, then 10 s, cycling. Each CONSUME message goes down the intake
// pipeline as an HTTP notification does (internal/intake): verified
// (alipay.Verifier.VerifyChannelMessage), decided, stored and applied in one
// transaction, and only then acknowledged SUCCESS. A message that
// does not verify is never stored: it is acknowledged FAIL. So is one the
// inbox could not store (the database is down), so that Alipay delivers it
// again. A Manager runs one Client per app that uses the channel and
// reports readiness.
package msgchannel

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"
	"github.com/rs/zerolog"

	"github.com/alipay-notify-gateway/gateway/internal/alipay"
	"github.com/alipay-notify-gateway/gateway/internal/intake"
	"github.com/alipay-notify-gateway/gateway/internal/metrics"
	"github.com/alipay-notify-gateway/gateway/internal/notify"
)

// Defaults, from the Java SDK where it has one.
var (
	DefaultBackoff      = []time.Duration{0, 5 * time.Second, 10 * time.Second}
	DefaultPingInterval = 2 * time.Second
	DefaultPongTimeout  = 10 * time.Second
	DefaultDialTimeout  = 10 * time.Second
	DefaultAckTimeout   = 5 * time.Second
	DefaultDrainTimeout = 10 * time.Second
	DefaultMaxInFlight  = 16
	DefaultReadLimit    = int64(1 << 20)
)

// SDKVersion is the sdk_version sent at register and connect: the official
// Java SDK's (AlipayConstants.SDK_VERSION of alipay-sdk-java-all, the
// release read for this client), since a server may insist on what its own
// client sends; docs/websocket-wire.md lists where this client differs from
// that one, and why.
const SDKVersion = "alipay-sdk-java-4.40.354.ALL"

// Config is one app's channel settings.
type Config struct {
	// App is the app to connect for; its PrivateKey signs register and
	// connect.
	App *alipay.App
	// Verifier verifies the register answer and every message with the
	// app's Alipay keys.
	Verifier *alipay.Verifier
	// Intake takes each message: decides, stores and applies it, and has
	// it acknowledged, counted and logged.
	Intake *intake.Pipeline
	// Host is ALIPAY_MSG_HOST: a bare host[:port] (HTTPS and WSS), or a URL
	// whose scheme says which (http→ws, https→wss), for a local simulator.
	Host string
	// AllowInsecure lets Host be a plain http (ws) URL. Off by default:
	// over plain WebSocket anyone on the path could inject messages, and
	// x-msgId and x-timestamp are outside what x-sign covers. For a local
	// simulator only (ALIPAY_MSG_ALLOW_INSECURE).
	AllowInsecure bool
	Logger        zerolog.Logger
	Metrics       *metrics.Metrics
	// HTTPClient makes the register call and the WebSocket handshake;
	// nil means a client without a timeout of its own (DialTimeout bounds
	// both).
	HTTPClient *http.Client

	// The timings; zero means the default.
	Backoff      []time.Duration // waits before reconnecting, cycled; reset once connected
	PingInterval time.Duration   // keep-alive ping period
	PongTimeout  time.Duration   // how long a ping may wait for its pong
	DialTimeout  time.Duration   // bounds register and the handshake each
	AckTimeout   time.Duration   // bounds writing one acknowledgement
	DrainTimeout time.Duration   // bounds waiting for in-flight messages at close
	MaxInFlight  int             // messages processed at once
	ReadLimit    int64           // largest frame accepted
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// Client keeps one app's channel connected and consumes its messages.
type Client struct {
	cfg      Config
	app      string
	log      zerolog.Logger
	base     *url.URL // register: base + /websocket/register.do
	wsBase   *url.URL // connect: wsBase + /websocket
	inflight inflight
	sem      chan struct{}

	mu        sync.Mutex
	connected bool
	lastErr   error
	since     time.Time

	reconnects atomic.Int64
}

// Endpoints returns the register and WebSocket URLs (without their query)
// for host: a bare host means https and wss; a URL's scheme http or https
// means ws or wss, and its path is a prefix.
func Endpoints(host string) (register, ws *url.URL, err error) {
	host = strings.TrimSpace(host)
	if host == "" {
		return nil, nil, errors.New("no message service host (ALIPAY_MSG_HOST)")
	}
	if !strings.Contains(host, "://") {
		host = "https://" + host
	}
	u, err := url.Parse(host)
	if err != nil {
		return nil, nil, fmt.Errorf("ALIPAY_MSG_HOST %q: %v", host, err)
	}
	if u.Host == "" || u.RawQuery != "" || u.Fragment != "" {
		return nil, nil, fmt.Errorf("ALIPAY_MSG_HOST %q: want a host or a URL like http://127.0.0.1:8090", host)
	}
	var wsScheme string
	switch u.Scheme {
	case "https", "wss":
		u.Scheme, wsScheme = "https", "wss"
	case "http", "ws":
		u.Scheme, wsScheme = "http", "ws"
	default:
		return nil, nil, fmt.Errorf("ALIPAY_MSG_HOST %q: scheme %q is not http or https", host, u.Scheme)
	}
	prefix := strings.TrimSuffix(u.Path, "/")
	register = &url.URL{Scheme: u.Scheme, Host: u.Host, Path: prefix + "/websocket/register.do"}
	ws = &url.URL{Scheme: wsScheme, Host: u.Host, Path: prefix + "/websocket"}
	return register, ws, nil
}

// NewClient returns a client for cfg.App. It returns an error when the app
// has no private key or the host is unusable.
func NewClient(cfg Config) (*Client, error) {
	if cfg.App == nil || cfg.Verifier == nil || cfg.Intake == nil {
		return nil, errors.New("msgchannel: App, Verifier and Intake are required")
	}
	if cfg.App.PrivateKey == nil {
		return nil, fmt.Errorf("msgchannel: app %s has no private key (ALIPAY_APP_PRIVATE_KEY_FILE): it signs register and connect", cfg.App.ID)
	}
	if _, ok := cfg.Verifier.App(cfg.App.ID); !ok {
		return nil, fmt.Errorf("msgchannel: app %s is not one of the verifier's", cfg.App.ID)
	}
	reg, ws, err := Endpoints(cfg.Host)
	if err != nil {
		return nil, fmt.Errorf("msgchannel: %w", err)
	}
	if ws.Scheme == "ws" && !cfg.AllowInsecure {
		return nil, fmt.Errorf("msgchannel: ALIPAY_MSG_HOST %q is plain http (ws): messages could be injected on the way; use https, or set ALIPAY_MSG_ALLOW_INSECURE=true for a local simulator", cfg.Host)
	}
	if len(cfg.Backoff) == 0 {
		cfg.Backoff = DefaultBackoff
	}
	setDefault(&cfg.PingInterval, DefaultPingInterval)
	setDefault(&cfg.PongTimeout, DefaultPongTimeout)
	setDefault(&cfg.DialTimeout, DefaultDialTimeout)
	setDefault(&cfg.AckTimeout, DefaultAckTimeout)
	setDefault(&cfg.DrainTimeout, DefaultDrainTimeout)
	setDefault(&cfg.MaxInFlight, DefaultMaxInFlight)
	setDefault(&cfg.ReadLimit, DefaultReadLimit)
	if cfg.HTTPClient == nil {
		cfg.HTTPClient = &http.Client{}
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	c := &Client{
		cfg:    cfg,
		app:    cfg.App.ID,
		log:    cfg.Logger.With().Str("app_id", cfg.App.ID).Str("channel", notify.ChannelWebSocket).Logger(),
		base:   reg,
		wsBase: ws,
		sem:    make(chan struct{}, cfg.MaxInFlight),
	}
	c.inflight.init()
	c.lastErr = errors.New("not connected yet")
	return c, nil
}

func setDefault[T comparable](v *T, d T) {
	var zero T
	if *v == zero {
		*v = d
	}
}

// AppID returns the client's app.
func (c *Client) AppID() string { return c.app }

// Connected reports whether the channel is connected now.
func (c *Client) Connected() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.connected
}

// Reconnects returns how many times the channel was connected again after
// it had been connected once.
func (c *Client) Reconnects() int64 { return c.reconnects.Load() }

// Ready returns nil while the channel is connected, and otherwise an error
// naming the app and the last reason it is not.
func (c *Client) Ready() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.connected {
		return nil
	}
	return fmt.Errorf("WebSocket channel of app %s is not connected: %v", c.app, c.lastErr)
}

func (c *Client) setState(up bool, err error) {
	c.mu.Lock()
	c.connected = up
	if err != nil {
		c.lastErr = err
	}
	if up {
		c.since = c.cfg.Now()
	}
	c.mu.Unlock()
	c.cfg.Metrics.WebSocketConnected(c.app, up)
}

// Run keeps the channel connected until ctx is done, then closes it
// cleanly: new messages are no longer taken, the ones in flight are
// committed and acknowledged (waiting at most DrainTimeout), and the
// WebSocket is closed with a close frame. It returns nil then. Every
// goroutine it started has ended when it returns.
func (c *Client) Run(ctx context.Context) error {
	c.cfg.Metrics.WebSocketConnected(c.app, false)
	attempt := 0
	everConnected := false
	for {
		connected, err := c.session(ctx, everConnected)
		if ctx.Err() != nil {
			break
		}
		if connected {
			everConnected = true
			attempt = 0
		}
		wait := c.cfg.Backoff[attempt%len(c.cfg.Backoff)]
		attempt++
		c.setState(false, err)
		msg := "WebSocket channel could not connect; retrying"
		if connected {
			msg = "WebSocket channel lost; reconnecting"
		}
		c.log.Warn().Err(err).Dur("retry_in", wait).Msg(msg)
		if wait > 0 {
			t := time.NewTimer(wait)
			select {
			case <-ctx.Done():
				t.Stop()
			case <-t.C:
			}
		}
		if ctx.Err() != nil {
			break
		}
	}
	c.setState(false, errors.New("stopped"))
	// Messages of a connection that was lost still finish (their
	// acknowledgement fails; Alipay delivers them again).
	c.drain()
	c.log.Info().Msg("WebSocket channel closed")
	return nil
}

// drain stops taking messages and waits for those in flight, at most
// DrainTimeout; past it their store work is cancelled, and waited for.
func (c *Client) drain() {
	if !c.inflight.closeAndWait(c.cfg.DrainTimeout) {
		c.log.Warn().Dur("waited", c.cfg.DrainTimeout).Msg("in-flight messages not done in time: cancelling them; Alipay will deliver them again")
		c.inflight.cancel()
		c.inflight.closeAndWait(0)
	}
}

// session registers, connects and serves one connection until it is lost
// or ctx is done. It reports whether the connection was established.
func (c *Client) session(ctx context.Context, reconnect bool) (bool, error) {
	dctx, cancel := context.WithTimeout(ctx, c.cfg.DialTimeout)
	token, zone, err := c.register(dctx)
	if err != nil {
		cancel()
		return false, fmt.Errorf("register: %w", err)
	}
	conn, err := c.dial(dctx, token, zone)
	cancel()
	if err != nil {
		return false, fmt.Errorf("connect: %w", err)
	}
	conn.SetReadLimit(c.cfg.ReadLimit)
	c.setState(true, nil)
	if reconnect {
		c.reconnects.Add(1)
		c.cfg.Metrics.WebSocketReconnect(c.app)
	}
	c.log.Info().Bool("reconnect", reconnect).Msg("WebSocket channel connected")

	readErr := make(chan error, 1)
	go func() { readErr <- c.readLoop(conn) }()

	ping := time.NewTicker(c.cfg.PingInterval)
	defer ping.Stop()
	for {
		select {
		case err := <-readErr:
			_ = conn.CloseNow()
			return true, fmt.Errorf("connection lost: %w", err)
		case <-ping.C:
			// Not derived from ctx: a write cancelled halfway closes the
			// connection, which must outlive ctx for the last acks.
			pctx, cancel := context.WithTimeout(context.Background(), c.cfg.PongTimeout)
			err := conn.Ping(pctx)
			cancel()
			if err != nil {
				_ = conn.CloseNow()
				<-readErr
				return true, fmt.Errorf("keep-alive ping: %w", err)
			}
		case <-ctx.Done():
			c.log.Info().Msg("closing WebSocket channel: finishing in-flight messages")
			c.drain()
			_ = conn.Close(websocket.StatusNormalClosure, "client shutting down")
			<-readErr
			return true, nil
		}
	}
}

// readLoop reads frames until the connection ends, and hands each CONSUME
// message to its own goroutine (at most MaxInFlight at once). It reads with
// no deadline of its own: cancelling a read closes the connection, and the
// connection must stay open for the acknowledgements while it closes.
func (c *Client) readLoop(conn *websocket.Conn) error {
	for {
		typ, msg, err := conn.Read(context.Background())
		if err != nil {
			return err
		}
		if typ != websocket.MessageText {
			c.log.Warn().Msg("binary frame ignored")
			continue
		}
		start := c.cfg.Now()
		if !c.inflight.add() {
			// Closing: not taken, not acknowledged; Alipay delivers it again.
			continue
		}
		c.sem <- struct{}{}
		go func() {
			defer func() { <-c.sem; c.inflight.done() }()
			c.handle(conn, msg, start)
		}()
	}
}

// register calls register.do and returns the link token and the zone
// cookie.
func (c *Client) register(ctx context.Context) (token, zone string, err error) {
	params, err := SignParams(c.signed(map[string]string{
		"app_id":      c.app,
		"charset":     "UTF-8",
		"timestamp":   strconv.FormatInt(c.cfg.Now().UnixMilli(), 10),
		"sdk_version": SDKVersion,
		"nonce":       nonce(),
	}), c.cfg.App.PrivateKey)
	if err != nil {
		return "", "", err
	}
	u := *c.base
	u.RawQuery = query(params)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return "", "", err
	}
	// The headers the Java SDK's WebUtils.getConnection sets.
	req.Header.Set("Accept", "text/plain,text/xml,text/javascript,text/html")
	req.Header.Set("User-Agent", "aop-sdk-java")
	req.Header.Set("Content-Type", contentType)
	resp, err := c.cfg.HTTPClient.Do(req)
	if err != nil {
		return "", "", withoutQuery(err, u.RawQuery)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if err != nil {
		return "", "", err
	}
	token, err = RegisterAnswer(c.cfg.Verifier, c.app, body)
	if err != nil {
		return "", "", fmt.Errorf("HTTP %d: %w", resp.StatusCode, err)
	}
	for _, ck := range resp.Cookies() {
		if ck.Name == "zone" {
			zone = ck.Value
		}
	}
	return token, zone, nil
}

// dial opens the WebSocket with the link token, sending the zone cookie
// back.
func (c *Client) dial(ctx context.Context, token, zone string) (*websocket.Conn, error) {
	params, err := SignParams(c.signed(map[string]string{
		"app_id":      c.app,
		"charset":     "UTF-8",
		"link_token":  token,
		"timestamp":   strconv.FormatInt(c.cfg.Now().UnixMilli(), 10),
		"sdk_version": SDKVersion,
	}), c.cfg.App.PrivateKey)
	if err != nil {
		return nil, err
	}
	u := *c.wsBase
	u.RawQuery = query(params)
	// As the Java SDK's AlipayMsgClient.doConnect: the zone cookie, the
	// form content type, and no User-Agent (an empty one is not sent).
	h := http.Header{"User-Agent": {""}}
	if zone != "" {
		h.Set("Cookie", "zone="+zone+";")
	}
	h.Set("Content-Type", contentType)
	conn, resp, err := websocket.Dial(ctx, u.String(), &websocket.DialOptions{HTTPClient: c.cfg.HTTPClient, HTTPHeader: h})
	if err != nil {
		err = withoutQuery(err, u.RawQuery)
		if resp != nil {
			return nil, fmt.Errorf("handshake answered HTTP %d: %w", resp.StatusCode, err)
		}
		return nil, err
	}
	return conn, nil
}

// contentType is the Content-Type the Java SDK sends at register and
// connect, with the charset it signs in.
const contentType = "application/x-www-form-urlencoded;charset=UTF-8"

// signed adds to params what the Java SDK adds in certificate mode: the
// app cert's SN and the Alipay root cert's SN.
func (c *Client) signed(params map[string]string) map[string]string {
	if a := c.cfg.App; a.CertMode && a.AppCertSN != "" {
		params["app_cert_sn"] = a.AppCertSN
		params["alipay_root_cert_sn"] = a.RootCertSN
	}
	return params
}

// queryless is an error whose text had a request's query (its sign and
// link token) taken out, for logs and the readiness probe.
type queryless struct {
	msg string
	err error
}

func (e *queryless) Error() string { return e.msg }
func (e *queryless) Unwrap() error { return e.err }

func withoutQuery(err error, rawQuery string) error {
	if rawQuery == "" || !strings.Contains(err.Error(), rawQuery) {
		return err
	}
	return &queryless{msg: strings.ReplaceAll(err.Error(), "?"+rawQuery, ""), err: err}
}

func query(params map[string]string) string {
	v := url.Values{}
	for k, val := range params {
		v.Set(k, val)
	}
	return v.Encode()
}

func nonce() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
