package loadtest

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/alipay-notify-gateway/gateway/internal/stdwebhook"
)

// Receiver is a local receiver of the gateway's webhooks, for make bench
// and make soak: an HTTP server that verifies each delivery as the
// Standard Webhooks specification says (stdwebhook.Verify, with the
// endpoints' secrets), checks that the body's id is its webhook-id, counts
// the deliveries by webhook-id and answers 204. Faults make it fail a share
// of them, as a flaky receiver does.
type Receiver struct {
	mu     sync.Mutex
	keys   [][]byte
	faults Faults
	rand   *rand.Rand
	got    map[string]received // by webhook-id
	st     ReceiverStats
	expect int
	done   chan struct{} // closed once Distinct reaches expect
	srv    *http.Server  // while started
}

type received struct {
	n      int
	digest [sha256.Size]byte // of the first body
}

// Faults is how a Receiver misbehaves; the zero value never does.
type Faults struct {
	// FailRate is the share of deliveries answered 500, not counted.
	FailRate float64
	// SlowRate is the share of deliveries counted but answered only after
	// Slow: past the sender's timeout, the sender takes for failed a
	// delivery that arrived.
	SlowRate float64
	Slow     time.Duration
}

// ReceiverStats is what a Receiver has received since its last Reset.
type ReceiverStats struct {
	Distinct   int `json:"distinct"`   // webhook-ids received
	Deliveries int `json:"deliveries"` // deliveries received: verified and counted
	Failed     int `json:"failed"`     // answered 500 (Faults)
	Slow       int `json:"slow"`       // answered late (Faults), counted
	// Rejected counts the deliveries answered 400: not verified, or whose
	// body's id is not their webhook-id.
	Rejected int `json:"rejected"`
	// Differing counts the deliveries of a webhook-id received before
	// with another body.
	Differing int       `json:"differing"`
	InFlight  int       `json:"in_flight"` // requests being answered now
	Since     time.Time `json:"since"`     // the last Reset
	// FirstS is when the first delivery arrived, in seconds after Since.
	FirstS *float64 `json:"first_s,omitempty"`
	// LastNew is when the last new webhook-id arrived; DoneAt when Distinct
	// reached the number Reset expects, Seconds after Since, at PerSecond
	// distinct webhook-ids a second.
	LastNew   *time.Time `json:"last_new,omitempty"`
	DoneAt    *time.Time `json:"done_at,omitempty"`
	Seconds   float64    `json:"seconds,omitempty"`
	PerSecond float64    `json:"per_second,omitempty"`
}

// NewReceiver returns a receiver with faults that verifies with secrets
// (SetSecrets).
func NewReceiver(faults Faults, secrets ...string) (*Receiver, error) {
	rc := &Receiver{faults: faults, rand: rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 19))}
	if err := rc.SetSecrets(secrets...); err != nil {
		return nil, err
	}
	rc.Reset(0)
	return rc, nil
}

// SetSecrets makes secrets (whsec_...) the ones a delivery may be signed
// with: those of the endpoints that send to the receiver. It returns
// stdwebhook.ErrBadSecret for one that does not parse.
func (rc *Receiver) SetSecrets(secrets ...string) error {
	keys := make([][]byte, len(secrets))
	for i, s := range secrets {
		k, err := stdwebhook.ParseSecret(s)
		if err != nil {
			return err
		}
		keys[i] = k
	}
	rc.mu.Lock()
	rc.keys = keys
	rc.mu.Unlock()
	return nil
}

// SetFaults changes how the receiver misbehaves from now on.
func (rc *Receiver) SetFaults(f Faults) {
	rc.mu.Lock()
	rc.faults = f
	rc.mu.Unlock()
}

// Reset forgets what was received and starts the clock; once expect
// distinct webhook-ids have arrived (expect > 0), the stats say when, and
// Done is closed.
func (rc *Receiver) Reset(expect int) {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	inFlight := rc.st.InFlight
	rc.got, rc.st, rc.expect, rc.done = map[string]received{}, ReceiverStats{Since: time.Now(), InFlight: inFlight}, expect, make(chan struct{})
}

// Done is closed once the number of distinct webhook-ids the last Reset
// expects have arrived.
func (rc *Receiver) Done() <-chan struct{} {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return rc.done
}

// Stats returns what was received since the last Reset.
func (rc *Receiver) Stats() ReceiverStats {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return rc.st
}

// Received returns how many deliveries of each webhook-id were received.
func (rc *Receiver) Received() map[string]int {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	out := make(map[string]int, len(rc.got))
	for id, r := range rc.got {
		out[id] = r.n
	}
	return out
}

// maxBody bounds a delivery's body.
const maxBody = 1 << 20

// ServeHTTP receives one delivery.
func (rc *Receiver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	rc.mu.Lock()
	rc.st.InFlight++
	keys, f := rc.keys, rc.faults
	fail, slow := false, false
	if x := rc.rand.Float64(); x < f.FailRate {
		fail = true
	} else if x < f.FailRate+f.SlowRate {
		slow = true
	}
	rc.mu.Unlock()
	defer func() {
		rc.mu.Lock()
		rc.st.InFlight--
		rc.mu.Unlock()
	}()

	if r.Method != http.MethodPost {
		rc.reject(w, http.StatusMethodNotAllowed, "POST only")
		return
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, maxBody+1))
	switch {
	case err != nil:
		return // the sender went away
	case len(body) > maxBody:
		rc.reject(w, http.StatusRequestEntityTooLarge, "body over 1 MiB")
		return
	}
	if err := stdwebhook.Verify(r.Header, body, time.Now(), keys...); err != nil {
		rc.reject(w, http.StatusBadRequest, err.Error())
		return
	}
	var event struct {
		ID string `json:"id"`
	}
	id := r.Header.Get(stdwebhook.HeaderID)
	if err := json.Unmarshal(body, &event); err != nil || event.ID != id {
		rc.reject(w, http.StatusBadRequest, "the body's id is not the webhook-id "+strconv.Quote(id))
		return
	}
	if fail {
		rc.mu.Lock()
		rc.st.Failed++
		rc.mu.Unlock()
		http.Error(w, "failing on purpose", http.StatusInternalServerError)
		return
	}
	rc.count(id, sha256.Sum256(body), slow)
	if slow {
		select {
		case <-time.After(f.Slow):
		case <-r.Context().Done():
			return
		}
	}
	w.WriteHeader(http.StatusNoContent)
}

func (rc *Receiver) reject(w http.ResponseWriter, code int, why string) {
	rc.mu.Lock()
	rc.st.Rejected++
	rc.mu.Unlock()
	http.Error(w, why, code)
}

// count records a verified delivery of id whose body has digest.
func (rc *Receiver) count(id string, digest [sha256.Size]byte, slow bool) {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	now := time.Now()
	rc.st.Deliveries++
	if rc.st.FirstS == nil {
		first := now.Sub(rc.st.Since).Seconds()
		rc.st.FirstS = &first
	}
	if slow {
		rc.st.Slow++
	}
	r, seen := rc.got[id]
	switch {
	case !seen:
		r.digest = digest
		rc.st.Distinct++
		rc.st.LastNew = &now
	case r.digest != digest:
		rc.st.Differing++
	}
	r.n++
	rc.got[id] = r
	if !seen && rc.st.Distinct == rc.expect {
		secs := now.Sub(rc.st.Since).Seconds()
		rc.st.DoneAt, rc.st.Seconds = &now, secs
		if secs > 0 {
			rc.st.PerSecond = float64(rc.expect) / secs
		}
		close(rc.done)
	}
}

// Start serves the receiver on addr (host:port) until Stop. It returns the
// error of a listener that cannot be opened (an address in use).
func (rc *Receiver) Start(addr string) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: rc, ReadHeaderTimeout: 10 * time.Second}
	rc.mu.Lock()
	rc.srv = srv
	rc.mu.Unlock()
	go func() { _ = srv.Serve(ln) }()
	return nil
}

// Stop closes the listener and every connection, as a receiver that goes
// away does: deliveries being answered get no answer, and new ones are
// refused until Start.
func (rc *Receiver) Stop() {
	rc.mu.Lock()
	srv := rc.srv
	rc.srv = nil
	rc.mu.Unlock()
	if srv != nil {
		_ = srv.Close()
	}
}

// ControlPrefix starts the paths of a Receiver's control (Control).
const ControlPrefix = "/_receiver/"

// Control returns a handler of rc's deliveries, with a control under
// ControlPrefix for a receiver in another process (loadgen -receive):
// GET /_receiver/stats answers Stats as JSON and, with a meter, the CPU
// time a distinct webhook-id cost (cpu: from the Reset to the last one
// expected, once they are all in); POST /_receiver/reset?expect=N calls
// Reset(N) and answers the same.
func (rc *Receiver) Control(meter *CPUMeter) http.Handler {
	c := &control{rc: rc, meter: meter}
	mux := http.NewServeMux()
	mux.Handle("/", rc)
	mux.HandleFunc("GET "+ControlPrefix+"stats", c.stats)
	mux.HandleFunc("POST "+ControlPrefix+"reset", c.reset)
	return mux
}

type control struct {
	rc     *Receiver
	meter  *CPUMeter
	mu     sync.Mutex
	cpu    *CPUUse
	cancel context.CancelFunc // the last reset's wait for Done
}

// controlStats is what the control answers.
type controlStats struct {
	ReceiverStats
	CPU *CPUUse `json:"cpu,omitempty"`
}

func (c *control) stats(w http.ResponseWriter, _ *http.Request) {
	c.mu.Lock()
	out := controlStats{ReceiverStats: c.rc.Stats(), CPU: c.cpu}
	c.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(out)
}

func (c *control) reset(w http.ResponseWriter, r *http.Request) {
	expect := 0
	if v := r.URL.Query().Get("expect"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 {
			http.Error(w, "expect must be a whole number", http.StatusBadRequest)
			return
		}
		expect = n
	}
	if err := c.start(expect); err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	c.stats(w, r)
}

// start resets the receiver and, with a meter and an expectation, measures
// the CPU time until it is met.
func (c *control) start(expect int) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.cancel != nil {
		c.cancel()
	}
	c.cpu, c.cancel = nil, nil
	var before CPUSample
	if c.meter != nil && expect > 0 {
		var err error
		if before, err = c.meter.Sample(); err != nil {
			return err
		}
	}
	c.rc.Reset(expect)
	if c.meter == nil || expect == 0 {
		return nil
	}
	ctx, cancel := context.WithCancel(context.Background())
	c.cancel = cancel
	done := c.rc.Done()
	go func() {
		select {
		case <-done:
		case <-ctx.Done():
			return
		}
		after, err := c.meter.Sample()
		c.mu.Lock()
		defer c.mu.Unlock()
		if err == nil && ctx.Err() == nil {
			c.cpu = Use(before, after, expect)
		}
	}()
	return nil
}

// ServeReceiver serves a Receiver that verifies with secrets, with its
// Control, on addr until ctx ends. It returns an error when there is no
// secret or one does not parse (stdwebhook.ErrBadSecret), or when addr
// cannot be listened on.
func ServeReceiver(ctx context.Context, addr string, secrets []string, meter *CPUMeter) error {
	if len(secrets) == 0 {
		return errors.New("no secret to verify deliveries with")
	}
	rc, err := NewReceiver(Faults{}, secrets...)
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: rc.Control(meter), ReadHeaderTimeout: 10 * time.Second}
	stop := context.AfterFunc(ctx, func() { _ = srv.Close() })
	defer stop()
	if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}
