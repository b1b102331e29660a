package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/alipay-notify-gateway/gateway/internal/stdwebhook"
)

// maxEventBytes bounds an event body the listener reads.
const maxEventBytes = 1 << 20

// listenDescription is the description of the endpoints listen registers.
const listenDescription = "alipayctl listen"

func runListen(args []string, stdout, stderr io.Writer) error {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	return listen(ctx, args, stdout, stderr, nil)
}

// listen runs alipayctl listen until ctx ends (runListen ends it on SIGINT
// or SIGTERM), then deletes the endpoint it registered. ready, when not
// nil, is called with the listener's URL once it serves (and is
// registered). It returns a usage error (exit status 2) for a bad command
// line or --secret; an error when it cannot listen on --addr, when the
// gateway cannot be reached or refuses to register the endpoint (with the
// answer's message and code), when the server fails, and when the endpoint
// cannot be deleted at the end (saying so, for the developer to delete it).
// An event that does not verify is no error: it is printed and answered
// 400.
func listen(ctx context.Context, args []string, stdout, stderr io.Writer, ready func(url string)) error {
	fs := newFlags("listen",
		"listen [--gateway URL] [--token TOKEN] [--events T1,T2] [--app-id ID] [--addr HOST:PORT] [--url URL] [--secret whsec_...] [--forward-to URL] [--print-json]",
		"OPS_API_TOKEN=$(cat .dev/keys/ops_api_token) alipayctl listen --events authorization.granted --forward-to http://127.0.0.1:3000/webhooks", stderr)
	addr := fs.String("addr", "127.0.0.1:0", "listen on `HOST:PORT` (port 0: any free port)")
	gateway := fs.String("gateway", "http://127.0.0.1:8080", "the gateway's ops API base `URL`")
	// Not os.Getenv as the default: --help would print the token.
	token := fs.String("token", "", "the ops API bearer `TOKEN` (default $OPS_API_TOKEN)")
	endpointURL := fs.String("url", "", "the `URL` the gateway is to post to (default http://<addr>/)")
	events := fs.String("events", "", "comma-separated event `TYPES` to subscribe to (default all)")
	appID := fs.String("app-id", "", "only events of the app `ID` (default every app)")
	secret := fs.String("secret", "", "verify with this endpoint `SECRET` (whsec_...) instead of registering an endpoint")
	forwardTo := fs.String("forward-to", "", "re-post each verified event, with its webhook-* headers, to `URL`")
	printJSON := fs.Bool("print-json", false, "print each event's whole body too")
	timeout := fs.Duration("timeout", 10*time.Second, "timeout of the calls to the ops API and to --forward-to")
	if err := fs.parseFlagsOnly(args); err != nil {
		return err
	}
	if *token == "" {
		*token = os.Getenv("OPS_API_TOKEN")
	}
	if *secret == "" && *token == "" {
		return usageError("give --token TOKEN (or set OPS_API_TOKEN) to register with the gateway, or --secret whsec_... of an endpoint")
	}
	if *secret != "" && (*events != "" || *appID != "" || *endpointURL != "") {
		return usageError("--events, --app-id and --url are for registering; --secret registers nothing")
	}
	var key []byte
	if *secret != "" {
		k, err := stdwebhook.ParseSecret(*secret)
		if err != nil {
			return usageError("--secret: %v", err)
		}
		key = k
	}

	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		return err
	}
	defer ln.Close()
	self := "http://" + dialable(ln.Addr()) + "/"
	out := &printer{w: stdout}
	out.line("listening on %s", self)

	client := &http.Client{Timeout: *timeout}
	h := &eventHandler{key: key, out: out, printJSON: *printJSON, forwardTo: *forwardTo, client: client, now: time.Now}
	errLog := log.New(stderr, "alipayctl listen: ", 0)
	if key != nil {
		out.line("verifying with --secret; nothing registered with the gateway")
		return serve(ctx, ln, h, errLog, out, self, ready)
	}

	if *endpointURL == "" {
		*endpointURL = self
	}
	ops := &opsAPI{base: strings.TrimRight(*gateway, "/"), token: *token, client: client}
	eventTypes := splitList(*events)
	if eventTypes == nil {
		eventTypes = []string{} // all
	}
	ep, err := ops.create(ctx, endpointRequest{URL: *endpointURL, EventTypes: eventTypes, AppID: *appID, Description: listenDescription})
	if err != nil {
		return err
	}
	// ctx may have ended: a fresh one for the last call.
	deleteEndpoint := func() error {
		dctx, cancel := context.WithTimeout(context.Background(), *timeout)
		defer cancel()
		if err := ops.delete(dctx, ep.ID); err != nil {
			return err
		}
		out.line("deleted endpoint %d", ep.ID)
		return nil
	}
	if h.key, err = stdwebhook.ParseSecret(ep.Secret); err != nil {
		return errors.Join(fmt.Errorf("the gateway answered endpoint %d with a secret that is not one: %v", ep.ID, err), deleteEndpoint())
	}
	types := "all events"
	if len(ep.EventTypes) > 0 {
		types = strings.Join(ep.EventTypes, ",")
	}
	if ep.AppID != "" {
		types += " of app " + ep.AppID
	}
	out.line("registered endpoint %d at %s for %s (%s); its secret: %s", ep.ID, ops.base, ep.URL, types, ep.Secret)
	serveErr := serve(ctx, ln, h, errLog, out, self, ready)
	return errors.Join(serveErr, deleteEndpoint())
}

// serve serves h on ln until ctx ends, then shuts the server down. It
// returns an error only when the server fails before ctx ends.
func serve(ctx context.Context, ln net.Listener, h http.Handler, errLog *log.Logger, out *printer, self string, ready func(string)) error {
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second, ErrorLog: errLog}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	if ready != nil {
		ready(self)
	}
	out.line("ready; Ctrl-C stops")
	select {
	case <-ctx.Done():
	case err := <-served:
		return err
	}
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = srv.Shutdown(sctx)
	return nil
}

// dialable is addr with an unspecified host (0.0.0.0, ::) as 127.0.0.1.
func dialable(addr net.Addr) string {
	if a, ok := addr.(*net.TCPAddr); ok && a.IP.IsUnspecified() {
		return net.JoinHostPort("127.0.0.1", fmt.Sprint(a.Port))
	}
	return addr.String()
}

// printer writes whole lines, one at a time.
type printer struct {
	mu sync.Mutex
	w  io.Writer
}

func (p *printer) line(format string, args ...any) {
	p.mu.Lock()
	defer p.mu.Unlock()
	fmt.Fprintf(p.w, format+"\n", args...)
}

// opsAPI is the part of the gateway's ops API listen calls.
type opsAPI struct {
	base, token string
	client      *http.Client
}

// endpointRequest is the body of POST /v1/endpoints.
type endpointRequest struct {
	URL         string   `json:"url"`
	EventTypes  []string `json:"event_types"`
	AppID       string   `json:"app_id,omitempty"`
	Description string   `json:"description"`
}

// endpoint is the answer to POST /v1/endpoints (Secret only there).
type endpoint struct {
	ID          int64    `json:"id"`
	URL         string   `json:"url"`
	EventTypes  []string `json:"event_types"`
	AppID       string   `json:"app_id"`
	Description string   `json:"description"`
	Enabled     bool     `json:"enabled"`
	Secret      string   `json:"secret"`
	CreatedAt   string   `json:"created_at"`
}

// create registers an endpoint. It returns an error when the gateway
// cannot be reached, answers other than 201, or answers 201 with no id or
// secret; an error answer's message and code are in it.
func (o *opsAPI) create(ctx context.Context, req endpointRequest) (*endpoint, error) {
	body, _ := json.Marshal(req)
	resp, err := o.do(ctx, http.MethodPost, "/v1/endpoints", body)
	if err != nil {
		return nil, fmt.Errorf("registering the endpoint: %v", err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 1<<16))
	if err != nil {
		return nil, fmt.Errorf("registering the endpoint: reading the answer: %v", err)
	}
	if resp.StatusCode != http.StatusCreated {
		return nil, fmt.Errorf("the gateway refused to register the endpoint: %s", apiError(resp, data))
	}
	var ep endpoint
	if err := json.Unmarshal(data, &ep); err != nil || ep.ID == 0 || ep.Secret == "" {
		return nil, fmt.Errorf("the gateway answered 201 with no endpoint id or secret: %s", clipText(data))
	}
	return &ep, nil
}

// delete deletes endpoint id. It returns an error when the gateway cannot
// be reached or answers other than 204 or 404 (already gone).
func (o *opsAPI) delete(ctx context.Context, id int64) error {
	resp, err := o.do(ctx, http.MethodDelete, fmt.Sprintf("/v1/endpoints/%d", id), nil)
	if err != nil {
		return fmt.Errorf("deleting endpoint %d (delete it yourself): %v", id, err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<16))
	switch resp.StatusCode {
	case http.StatusNoContent, http.StatusNotFound:
		return nil
	}
	return fmt.Errorf("deleting endpoint %d (delete it yourself): %s", id, apiError(resp, data))
}

func (o *opsAPI) do(ctx context.Context, method, path string, body []byte) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, method, o.base+path, bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Authorization", "Bearer "+o.token)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	return o.client.Do(req)
}

// apiError is an error answer in one line: "HTTP 401: message (code)".
func apiError(resp *http.Response, data []byte) string {
	var e struct {
		Error struct {
			Code    string `json:"code"`
			Message string `json:"message"`
		} `json:"error"`
	}
	if json.Unmarshal(data, &e) == nil && e.Error.Message != "" {
		if e.Error.Code != "" {
			return fmt.Sprintf("HTTP %d: %s (%s)", resp.StatusCode, e.Error.Message, e.Error.Code)
		}
		return fmt.Sprintf("HTTP %d: %s", resp.StatusCode, e.Error.Message)
	}
	return fmt.Sprintf("HTTP %d: %s", resp.StatusCode, clipText(data))
}

// clipText is data in one short line.
func clipText(data []byte) string {
	s := strings.Join(strings.Fields(string(data)), " ")
	if len(s) > 200 {
		s = s[:200] + "…"
	}
	return s
}

// event is what listen prints of an event body.
type event struct {
	ID       string `json:"id"`
	Type     string `json:"type"`
	AppID    string `json:"app_id"`
	NotifyID string `json:"notify_id"`
}

// eventHandler verifies each event posted to it, prints it, and answers
// 204, or 400 when its signature does not verify (so that the gateway
// retries and the developer sees why).
type eventHandler struct {
	key       []byte
	out       *printer
	printJSON bool
	forwardTo string
	client    *http.Client
	now       func() time.Time
}

func (h *eventHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	now := h.now()
	stamp := now.Format(time.DateTime)
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		http.Error(w, "POST events here", http.StatusMethodNotAllowed)
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxEventBytes))
	if err != nil {
		h.out.line("%s  REFUSED  %s: body over %d bytes or unreadable: %v -> 413", stamp, r.Header.Get(stdwebhook.HeaderID), maxEventBytes, err)
		http.Error(w, "body too large or unreadable", http.StatusRequestEntityTooLarge)
		return
	}
	if err := stdwebhook.Verify(r.Header, body, now, h.key); err != nil {
		id := r.Header.Get(stdwebhook.HeaderID)
		if id == "" {
			id = "(no webhook-id)"
		}
		h.out.line("%s  BAD SIGNATURE  %s: %v -> 400", stamp, id, err)
		http.Error(w, "signature does not verify: "+err.Error(), http.StatusBadRequest)
		return
	}
	var e event
	note := ""
	if err := json.Unmarshal(body, &e); err != nil {
		note = "  (body is not a JSON object)"
	} else if id := r.Header.Get(stdwebhook.HeaderID); e.ID != id {
		note = fmt.Sprintf("  (body id %q is not the webhook-id)", e.ID)
	}
	h.out.line("%s  %s  %s  app_id=%s notify_id=%s%s -> 204", stamp, r.Header.Get(stdwebhook.HeaderID), e.Type, e.AppID, e.NotifyID, note)
	if h.printJSON {
		var pretty bytes.Buffer
		if json.Indent(&pretty, body, "", "  ") != nil {
			pretty.Reset()
			pretty.Write(body)
		}
		h.out.line("%s", pretty.String())
	}
	if h.forwardTo != "" {
		h.forward(r, body)
	}
	w.WriteHeader(http.StatusNoContent)
}

// forward re-posts a verified event, with its webhook-* headers, to
// forwardTo and prints the answer's status.
func (h *eventHandler) forward(r *http.Request, body []byte) {
	req, err := http.NewRequestWithContext(r.Context(), http.MethodPost, h.forwardTo, bytes.NewReader(body))
	if err != nil {
		h.out.line("  forward to %s: %v", h.forwardTo, err)
		return
	}
	for _, name := range []string{stdwebhook.HeaderID, stdwebhook.HeaderTimestamp, stdwebhook.HeaderSignature, "Content-Type"} {
		if v := r.Header.Get(name); v != "" {
			req.Header.Set(name, v)
		}
	}
	resp, err := h.client.Do(req)
	if err != nil {
		h.out.line("  forward to %s: %v", h.forwardTo, err)
		return
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<16))
	h.out.line("  forwarded to %s: HTTP %d", h.forwardTo, resp.StatusCode)
}
