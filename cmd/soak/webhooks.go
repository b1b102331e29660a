package main

import (
	"context"
	"fmt"
	"time"

	"github.com/alipay-notify-gateway/gateway/internal/loadtest"
)

// The webhooks scenario's settings.
const (
	webhookLoad    = 60 * time.Second // how long the load runs
	webhookTimeout = "1s"             // WEBHOOK_TIMEOUT of both gateways
	// settleWait bounds the wait, after the load, until every event is
	// delivered: the last failures' retries come 10 s doubling (±20 %)
	// after them, and an attempt lost with its replica is made again
	// once its lease (34 s) ends.
	settleWait = 8 * time.Minute
)

// webhookFaults is how the receiver fails while the load runs: a 500 for
// a fifth of the deliveries, an answer only after the gateways' timeout for
// 2 %.
var webhookFaults = loadtest.Faults{FailRate: 0.2, SlowRate: 0.02, Slow: 1500 * time.Millisecond}

// webhooksScenario: two replicas on one database, both dispatching, one
// endpoint (every type) to a local receiver that fails as webhookFaults
// says while a steady load goes to both replicas. During the load, B is
// killed with SIGKILL while deliveries are in flight and started again,
// the receiver goes away for 4 s, and Postgres restarts. Then the receiver
// answers everything, and the scenario waits until every event is
// delivered, and compares what the receiver got with the events table.
func (s *soak) webhooksScenario(ctx context.Context) error {
	each := s.rate / 4
	n := int(each * webhookLoad.Seconds())
	s.say("== webhooks: two replicas dispatching to a receiver failing %.0f%% of attempts (%.0f%% past the %s timeout), %d notifications to each at %s/s; kill -9 of B, the receiver restarted, Postgres restarted",
		100*webhookFaults.FailRate, 100*webhookFaults.SlowRate, webhookTimeout, n, rate(each))
	db, err := s.freshDB(ctx, "soak_webhooks")
	if err != nil {
		return err
	}
	rc, err := loadtest.NewReceiver(loadtest.Faults{})
	if err != nil {
		return err
	}
	addr := fmt.Sprintf("127.0.0.1:%d", s.receiverPort)
	if err := rc.Start(addr); err != nil {
		return fmt.Errorf("receiver: %w", err)
	}
	defer rc.Stop()
	env := []string{"WEBHOOK_TIMEOUT=" + webhookTimeout}
	a, err := s.startGateway(ctx, "webhooks-a", s.portA, db, env...)
	if err != nil {
		return err
	}
	b, err := s.startGateway(ctx, "webhooks-b", s.portB, db, env...)
	if err != nil {
		return err
	}
	_, secret, err := s.createEndpoint(a, "http://"+addr+"/hook")
	if err != nil {
		return err
	}
	if err := rc.SetSecrets(secret); err != nil {
		return err
	}
	rc.SetFaults(webhookFaults)

	base := load{n: n, c: 8, rate: each, tsBase: s.started * 1000, dbURL: db, allow: true}
	la, lb := base, base
	la.name, la.port, la.prefix, la.seed = "webhooks-a", s.portA, fmt.Sprintf("wha-%d", s.started), 16
	lb.name, lb.port, lb.prefix, lb.seed = "webhooks-b", s.portB, fmt.Sprintf("whb-%d", s.started), 17
	start := time.Now()
	runA, runB := s.background(ctx, la), s.background(ctx, lb)
	var f webhooksFigures

	if err := sleepUntil(ctx, start.Add(8*time.Second)); err != nil {
		return err
	}
	f.InFlightAtKill = inFlight(ctx, rc, 10*time.Second)
	s.kill9(b)
	s.say("webhooks: killed B (SIGKILL) with %d deliveries in flight at the receiver", f.InFlightAtKill)
	if err := sleepUntil(ctx, time.Now().Add(3*time.Second)); err != nil {
		return err
	}
	if _, err = s.startGateway(ctx, "webhooks-b", s.portB, db, env...); err != nil {
		return err
	}

	if err := sleepUntil(ctx, start.Add(22*time.Second)); err != nil {
		return err
	}
	rc.Stop()
	s.say("webhooks: the receiver stopped (listener and connections closed)")
	if err := sleepUntil(ctx, time.Now().Add(4*time.Second)); err != nil {
		return err
	}
	if err := restart(ctx, rc, addr); err != nil {
		return err
	}
	s.say("webhooks: the receiver started again")

	if err := sleepUntil(ctx, start.Add(36*time.Second)); err != nil {
		return err
	}
	t0 := time.Now()
	if err := s.pg(ctx, "stop", s.pgDir); err != nil {
		return err
	}
	if err := sleepUntil(ctx, time.Now().Add(4*time.Second)); err != nil {
		return err
	}
	if err := s.pg(ctx, "start", s.pgDir, fmt.Sprint(s.pgPort)); err != nil {
		return err
	}
	s.say("webhooks: Postgres down for %.1fs", time.Since(t0).Seconds())

	resA, resB := <-runA, <-runB
	s.say("webhooks: load A: %s", resA.line())
	s.say("webhooks: load B: %s", resB.line())
	f.A, f.B = resA.fig, resB.fig
	rc.SetFaults(loadtest.Faults{})
	s.say("webhooks: the load is over and the receiver answers everything; waiting for every event (at most %s)", settleWait)
	if err := s.settle(ctx, rc, db, &f); err != nil {
		return err
	}
	s.stopAll()
	s.record(judge("webhooks", f))
	return nil
}

// settle waits until every event of db is delivered and received, or
// settleWait has passed, and fills in f's database and receiver figures.
func (s *soak) settle(ctx context.Context, rc *loadtest.Receiver, db string, f *webhooksFigures) error {
	end := time.Now()
	next := end.Add(30 * time.Second)
	for {
		ids, dbf, err := webhookRows(ctx, db)
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			s.say("webhooks: reading the database: %v; trying again", err)
		} else {
			got := rc.Received()
			f.DB, f.Missing = dbf, missing(ids, got)
			f.DB.Events, f.Extra = len(ids), len(got)-(len(ids)-f.Missing)
			done := f.Missing == 0 && dbf.Pending == 0 && dbf.Deliveries == len(ids)
			if done {
				secs := time.Since(end).Seconds()
				f.SettledS = &secs
			}
			if done || time.Since(end) > settleWait {
				f.Receiver = rc.Stats()
				return nil
			}
			if time.Now().After(next) {
				s.say("webhooks: after %.0fs: %d of %d events received, %d deliveries pending", time.Since(end).Seconds(),
					len(ids)-f.Missing, len(ids), dbf.Pending)
				next = next.Add(30 * time.Second)
			}
		}
		if err := sleepUntil(ctx, time.Now().Add(2*time.Second)); err != nil {
			return err
		}
	}
}

// missing counts the ids that got lacks.
func missing(ids []string, got map[string]int) int {
	n := 0
	for _, id := range ids {
		if got[id] == 0 {
			n++
		}
	}
	return n
}

// inFlight waits up to within until the receiver is answering a delivery,
// and returns how many it is answering (0 if none came).
func inFlight(ctx context.Context, rc *loadtest.Receiver, within time.Duration) int {
	deadline := time.Now().Add(within)
	for time.Now().Before(deadline) && ctx.Err() == nil {
		if n := rc.Stats().InFlight; n > 0 {
			return n
		}
		time.Sleep(5 * time.Millisecond)
	}
	return 0
}

// restart starts the receiver on addr again, trying for 10 s while the
// address is still held.
func restart(ctx context.Context, rc *loadtest.Receiver, addr string) error {
	deadline := time.Now().Add(10 * time.Second)
	for {
		err := rc.Start(addr)
		if err == nil || time.Now().After(deadline) {
			return err
		}
		if err := sleepUntil(ctx, time.Now().Add(200*time.Millisecond)); err != nil {
			return err
		}
	}
}

// sleepUntil waits until t, or returns ctx's error when it ends first.
func sleepUntil(ctx context.Context, t time.Time) error {
	select {
	case <-time.After(time.Until(t)):
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
