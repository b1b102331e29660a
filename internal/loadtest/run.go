// Package loadtest loads a running gateway and checks what it kept: it
// signs notifications as Alipay does (Generator), posts them over
// keep-alive connections (Client), sums up each pass (Summary), measures
// the CPU time a notification costs (CPUMeter), and checks in Postgres that
// every acknowledged notification is stored exactly once, with one effect
// (CheckDatabase). A Run does all of it in one go. cmd/loadgen (make bench)
// and cmd/soak (make soak) are built on it.
package loadtest

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/alipay-notify-gateway/gateway/internal/devpki"
)

// Run is one load run: N notifications of Gen posted by Client, then
// optionally the same N again, forged passes, and the database check.
type Run struct {
	Gen    *Generator
	Client *Client
	N      int
	// Rate is the steady deliveries per second, signed on the fly; 0 signs
	// everything first and sends as fast as the connections go.
	Rate float64
	// Resend sends the same N again after the first pass: pure duplicates.
	Resend bool
	// Forged lists kinds of forged requests (ForgedKinds), ForgedN of each,
	// sent after the other passes; every one must be refused.
	Forged  []string
	ForgedN int
	// Meter, when set, measures each pass's CPU time (Summary.CPU).
	Meter *CPUMeter
	// StartAt, when set, is when to start sending once signed, so that runs
	// in several processes start together. Ready, when set, is called once
	// signed (before StartAt): runs in one process wait for each other in it.
	StartAt time.Time
	Ready   func(ctx context.Context)
	// DatabaseURL, when set, is the gateway's database: the run ends with
	// CheckDatabase.
	DatabaseURL string
	// Say prints a line for people; Emit hands over each summary, and the
	// check as {"check": Check}, as they are made. Either may be nil.
	Say  func(format string, a ...any)
	Emit func(v any)
}

// Report is what a run found.
type Report struct {
	Passes []Summary // "new", then "resend"
	Forged []Summary // one per forged kind
	Check  *Check    // with DatabaseURL
	// Unacked counts the deliveries of Passes that were not acknowledged.
	Unacked int
	// Interrupted reports a run stopped by its context.
	Interrupted bool
}

// presignMax is how many notifications a run at a steady rate signs before
// it starts; a longer one signs on the fly.
const presignMax = 100_000

// Exit statuses of a run, as loadgen exits.
const (
	ExitOK       = 0 // everything acknowledged, and the check passed
	ExitFailed   = 1 // the check failed, the run was interrupted, or an error
	ExitUsage    = 2 // bad flags
	ExitNotAcked = 3 // some deliveries were not acknowledged, but the check passed
)

// Exit is the run's exit status: ExitFailed when the check finds an
// acknowledged notification missing or doubled, ExitNotAcked when some
// deliveries were not acknowledged and that was not expected
// (allowFailures), ExitFailed when the run was interrupted, else ExitOK.
func (r *Report) Exit(allowFailures bool) int {
	switch {
	case r.Check != nil && !r.Check.OK():
		return ExitFailed
	case r.Unacked > 0 && !allowFailures:
		return ExitNotAcked
	case r.Interrupted:
		return ExitFailed
	}
	return ExitOK
}

// Do runs r. An error (a body that cannot be signed, a forged request
// acknowledged, a database that cannot be checked) ends it; the report
// holds what was done until then.
func (r *Run) Do(ctx context.Context) (*Report, error) {
	say, emit := r.Say, r.Emit
	if say == nil {
		say = func(string, ...any) {}
	}
	if emit == nil {
		emit = func(any) {}
	}
	g, rep := r.Gen, &Report{}
	ids, methods := make([]string, r.N), make([]string, r.N)
	for i := range r.N {
		ids[i], methods[i] = g.NotifyID(i), g.Method(i)
	}

	// Sign everything first, so that signing does not compete with the
	// gateway for CPU; only a long run at a steady rate (a soak) signs on
	// the fly, so as not to hold presignMax bodies or more in memory.
	body := g.Body
	if r.Rate == 0 || r.N < presignMax {
		t0 := time.Now()
		bodies, err := SignAll(ctx, g, r.N)
		if err != nil {
			return rep, err
		}
		say("signed %d notifications (prefix %s, seed %d, ts-base %d) in %.1fs", r.N, g.Prefix, g.Seed, g.TSBase, time.Since(t0).Seconds())
		body = func(i int) ([]byte, error) { return bodies[i], nil }
	}
	if r.Rate > 0 {
		say("sending %d notifications at %.0f/s (prefix %s, seed %d, ts-base %d)", r.N, r.Rate, g.Prefix, g.Seed, g.TSBase)
	}
	if r.Ready != nil {
		r.Ready(ctx)
	}
	if !r.StartAt.IsZero() {
		wait := time.Until(r.StartAt)
		if wait < 0 {
			say("-start-at is %.1fs past: starting now", -wait.Seconds())
		}
		select {
		case <-time.After(wait):
		case <-ctx.Done():
		}
	}

	acked := make([]bool, r.N)
	names := []string{"new"}
	if r.Resend {
		names = append(names, "resend")
	}
	for _, name := range names {
		if ctx.Err() != nil {
			break
		}
		var before CPUSample
		var err error
		if r.Meter != nil {
			if before, err = r.Meter.Sample(); err != nil {
				return rep, err
			}
		}
		results, elapsed, err := r.Client.Pass(ctx, r.N, r.Rate, body)
		if err != nil {
			return rep, err
		}
		for i, res := range results {
			acked[i] = acked[i] || res.Outcome == OutcomeSuccess
		}
		s := Summarize(name, results, elapsed)
		if r.Meter != nil {
			after, err := r.Meter.Sample()
			if err != nil {
				return rep, err
			}
			s.CPU = Use(before, after, s.Acked)
		}
		rep.Unacked += s.Sent - s.Acked
		rep.Passes = append(rep.Passes, s)
		say("%s", s)
		emit(s)
	}
	for _, kind := range r.Forged {
		if ctx.Err() != nil {
			break
		}
		s, err := r.forgedPass(ctx, kind)
		if err != nil {
			return rep, err
		}
		rep.Forged = append(rep.Forged, s)
		say("%s", s)
		emit(s)
		if s.Acked > 0 {
			return rep, fmt.Errorf("%d forged requests (%s) were acknowledged", s.Acked, kind)
		}
	}
	if p := rep.Passes; len(p) == 2 && p[0].PerSecond > 0 {
		say("a duplicate goes %.2f× as fast as a new notification (%.0f/s vs %.0f/s)",
			p[1].PerSecond/p[0].PerSecond, p[1].PerSecond, p[0].PerSecond)
	}

	if r.DatabaseURL != "" {
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Minute)
		c, err := CheckDatabase(cctx, r.DatabaseURL, g.AppID, ids, methods, acked)
		cancel()
		if err != nil {
			return rep, err
		}
		rep.Check = &c
		say("%s", c)
		emit(map[string]Check{"check": c})
	}
	rep.Interrupted = ctx.Err() != nil
	return rep, nil
}

// forgedPass sends ForgedN forged requests of kind (a few distinct bodies,
// made before the pass, cycled) and sums them up: PerSecond counts the
// refused ones, and CPU is per request.
func (r *Run) forgedPass(ctx context.Context, kind string) (Summary, error) {
	bodies := make([][]byte, min(r.ForgedN, 64))
	for i := range bodies {
		b, err := r.Gen.Forged(kind, i)
		if err != nil {
			return Summary{}, err
		}
		bodies[i] = b
	}
	var before CPUSample
	var err error
	if r.Meter != nil {
		if before, err = r.Meter.Sample(); err != nil {
			return Summary{}, err
		}
	}
	results, elapsed, err := r.Client.Pass(ctx, r.ForgedN, 0, func(i int) ([]byte, error) { return bodies[i%len(bodies)], nil })
	if err != nil {
		return Summary{}, err
	}
	s := Summarize("forged-"+kind, results, elapsed)
	refused := s.Sent - s.Acked - s.Failed[OutcomeConnErr]
	s.Refused, s.BodyBytes = refused, len(bodies[0])
	if elapsed > 0 {
		s.PerSecond = float64(refused) / elapsed.Seconds()
	}
	if r.Meter != nil {
		after, err := r.Meter.Sample()
		if err != nil {
			return Summary{}, err
		}
		s.CPU = Use(before, after, refused)
	}
	return s, nil
}

// Files written by GenKey.
const (
	PublicKeyFile  = "public_key.txt"        // bare base64: ALIPAY_PUBLIC_KEY_FILE
	PrivateKeyFile = "private_key_pkcs8.pem" // loadgen -key
)

// GenKey writes a new RSA-2048 "Alipay" key pair into dir.
func GenKey(dir string) error {
	key, err := devpki.NewKey()
	if err != nil {
		return err
	}
	pub, err := devpki.PublicKeyBase64(&key.PublicKey)
	if err != nil {
		return err
	}
	priv, err := devpki.PrivateKeyPKCS8PEM(key)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, PublicKeyFile), []byte(pub+"\n"), 0o644); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, PrivateKeyFile), priv, 0o600)
}

// SignAll signs notifications 0..n-1 on every CPU.
func SignAll(ctx context.Context, g *Generator, n int) ([][]byte, error) {
	bodies := make([][]byte, n)
	var (
		next    atomic.Int64
		wg      sync.WaitGroup
		errOnce sync.Once
		first   error
	)
	for range runtime.GOMAXPROCS(0) {
		wg.Go(func() {
			for {
				i := int(next.Add(1) - 1)
				if i >= n || ctx.Err() != nil {
					return
				}
				b, err := g.Body(i)
				if err != nil {
					errOnce.Do(func() { first = fmt.Errorf("notification %d: %w", i, err) })
					return
				}
				bodies[i] = b
			}
		})
	}
	wg.Wait()
	if first == nil && ctx.Err() != nil {
		first = ctx.Err()
	}
	return bodies, first
}
