package batchsend_test

import (
	"context"
	"errors"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/alipay-notify-gateway/gateway/internal/batchsend"
	"github.com/alipay-notify-gateway/gateway/internal/notify"
	"github.com/alipay-notify-gateway/gateway/internal/openapisim"
	"github.com/alipay-notify-gateway/gateway/internal/testkit"
)

func TestSender_Run(t *testing.T) {
	t.Parallel()

	t.Run("OK", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t, options{})
		id := e.create(t, request(users(1, 50)))
		e.start(t, nil, nil)
		v := e.wait(t, id, notify.BatchFinished)
		if v.Counts.Sent != 50 || v.Counts.Total != 50 || v.FinishedAt == nil || len(v.FailedBySubCode) != 0 {
			t.Fatalf("%+v", v)
		}
		if seen := e.once(t); len(seen) != 50 {
			t.Fatalf("%d users got it", len(seen))
		}
		for _, m := range e.sim.Sent() {
			if m.Data != `{"keyword1":{"value":"12:00"}}` || m.UserTemplateID != "tpl1" || m.AuthAppID != "" {
				t.Fatalf("%+v", m)
			}
		}
		if n := e.events(t, id); n != 1 {
			t.Fatalf("%d finished events", n)
		}
		// Finishing again writes nothing.
		if done, err := e.db.FinishBatch(context.Background(), id); err != nil || done || e.events(t, id) != 1 {
			t.Fatalf("finish again: %v %v", done, err)
		}
	})

	t.Run("OKOwnData", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t, options{})
		r := request(users(1, 2))
		r.Data = nil
		r.Recipients[0].Data = []byte(`{"keyword2":{"value":"b"},"keyword1":{"value":"a"}}`)
		r.Recipients[1].Data = []byte(`"{\"keyword1\":{\"value\":\"c\"}}"`)
		id := e.create(t, r)
		e.start(t, nil, nil)
		e.wait(t, id, notify.BatchFinished)
		got := map[string]string{}
		for _, m := range e.sim.Sent() {
			got[m.ToUserID] = m.Data
		}
		if got[users(1, 1)[0]] != `{"keyword2":{"value":"b"},"keyword1":{"value":"a"}}` || got[users(2, 1)[0]] != `{"keyword1":{"value":"c"}}` {
			t.Fatalf("%v", got)
		}
	})

	t.Run("OKRefusedPerRecipient", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t, options{})
		ids := users(1, 6)
		e.sim.FailUser(ids[2], "40004", "USER_SUBSCRIPTION_USED_UP")
		e.sim.FailUser(ids[4], "40004", "USER_SUBSCRIPTION_USED_UP")
		id := e.create(t, request(ids))
		e.start(t, nil, nil)
		v := e.wait(t, id, notify.BatchFinished)
		if v.Counts.Sent != 4 || v.Counts.Failed != 2 || v.FailedBySubCode["USER_SUBSCRIPTION_USED_UP"] != 2 {
			t.Fatalf("%+v", v)
		}
		failed := e.recipients(t, id, notify.RecipientFailed)
		if len(failed) != 2 || failed[0].Row != 3 || failed[0].Code != "40004" || failed[0].SubCode != "USER_SUBSCRIPTION_USED_UP" || failed[0].Attempts != 1 {
			t.Fatalf("%+v", failed[0])
		}
		if n := len(e.sim.Calls(send)); n != 6 {
			t.Fatalf("%d calls: a refusal was tried again", n)
		}
	})

	// A fifth of the sends are delivered and answered 20000: unknown,
	// and never sent again.
	t.Run("OKUnknownNotResent", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t, options{})
		ids := users(1, 40)
		e.sim.SetFailure(send, 0.2, openapisim.Fault{Code: "20000", SubCode: "isp.unknow-error", Deliver: true})
		want := 0
		for _, u := range ids {
			if openapisim.Chosen(u, 1, 0.2) {
				want++
			}
		}
		id := e.create(t, request(ids))
		e.start(t, nil, nil)
		v := e.wait(t, id, notify.BatchFinished)
		if want == 0 || v.Counts.Unknown != want || v.Counts.Sent != 40-want {
			t.Fatalf("%+v; want %d unknown", v.Counts, want)
		}
		time.Sleep(100 * time.Millisecond)
		if seen := e.once(t); len(seen) != 40 || len(e.sim.Calls(send)) != 40 {
			t.Fatalf("%d delivered in %d calls", len(seen), len(e.sim.Calls(send)))
		}
		for _, r := range e.recipients(t, id, notify.RecipientUnknown) {
			if r.Code != "20000" || r.SubCode != "isp.unknow-error" || r.Attempts != 1 {
				t.Fatalf("%+v", r)
			}
		}
	})

	// Over the simulator's own limit (40005): tried again, each sent once.
	t.Run("OKRateLimitedRetried", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t, options{})
		e.sim.SetRateLimit(testkit.AppID, 50, 2)
		id := e.create(t, request(users(1, 30)))
		e.start(t, nil, func(c *batchsend.Config) { c.MaxAttempts = 100 })
		v := e.wait(t, id, notify.BatchFinished)
		if v.Counts.Sent != 30 || e.sim.Stats().RateLimited == 0 {
			t.Fatalf("%+v, %d answered 40005", v.Counts, e.sim.Stats().RateLimited)
		}
		if seen := e.once(t); len(seen) != 30 {
			t.Fatalf("%d users got it", len(seen))
		}
		if n := e.count(t, `SELECT count(*) FROM template_message_recipients WHERE attempts > 1`); n == 0 {
			t.Fatal("no recipient was tried twice")
		}
	})

	// Failures before the request was written are tried again; when they
	// go on, the recipient fails once its attempts run out.
	t.Run("OKNotSentRetried", func(t *testing.T) {
		t.Parallel()
		refused := &dialFailures{left: 5}
		e := newEnv(t, options{transport: refused})
		id := e.create(t, request(users(1, 10)))
		e.start(t, nil, nil)
		v := e.wait(t, id, notify.BatchFinished)
		if v.Counts.Sent != 10 || refused.failed.Load() != 5 {
			t.Fatalf("%+v after %d refused dials", v.Counts, refused.failed.Load())
		}
		if seen := e.once(t); len(seen) != 10 {
			t.Fatalf("%d users got it", len(seen))
		}
	})
	t.Run("ErrRetriesExhausted", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t, options{transport: &dialFailures{left: 1 << 30}})
		id := e.create(t, request(users(1, 2)))
		e.start(t, nil, func(c *batchsend.Config) { c.MaxAttempts = 3 })
		v := e.wait(t, id, notify.BatchFinished)
		failed := e.recipients(t, id, notify.RecipientFailed)
		if v.Counts.Failed != 2 || v.FailedBySubCode["retries_exhausted"] != 2 || failed[0].Attempts != 3 ||
			!strings.Contains(failed[0].Error, "retries exhausted after 3 attempts") || e.sim.Requests() != 0 {
			t.Fatalf("%+v %+v", v, failed[0])
		}
	})

	t.Run("OKPrecheck", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t, options{})
		ids := users(1, 6)
		e.sim.RequireSubscription(true)
		for _, u := range ids[:4] {
			e.sim.Subscribe(u, "tpl1", openapisim.Subscription{State: "1", Type: "longterm"})
		}
		e.sim.Subscribe(ids[4], "tpl1", openapisim.Subscription{State: "0", Type: "longterm"})
		r := request(ids)
		r.Precheck = true
		id := e.create(t, r)
		unlimited := e.start(t, nil, nil)
		v := e.wait(t, id, notify.BatchFinished)
		unlimited.stop()
		if v.Counts.Sent != 4 || v.Counts.Skipped != 2 || v.Counts.Failed != 0 || !v.Precheck {
			t.Fatalf("%+v", v)
		}
		if n := len(e.sim.Calls(openapisim.MethodSubscribeQuery)); n != 6 || len(e.sim.Calls(send)) != 4 {
			t.Fatalf("%d queries, %d sends", n, len(e.sim.Calls(send)))
		}
		// At a low rate too (its two calls fit in the bucket).
		low := e.create(t, &batchsend.Request{UserTemplateID: "tpl1", Page: "p", Data: r.Data, Precheck: true,
			Recipients: []batchsend.Recipient{{ToUserID: ids[0]}, {ToUserID: ids[5]}}})
		e.start(t, nil, func(c *batchsend.Config) { c.Rates = batchsend.Rates{Default: 4} })
		if v := e.wait(t, low, notify.BatchFinished); v.Counts.Sent != 1 || v.Counts.Skipped != 1 {
			t.Fatalf("%+v", v.Counts)
		}
		// Without the pre-check, the simulator refuses them (40004).
		id = e.create(t, request(users(5, 2)))
		v = e.wait(t, id, notify.BatchFinished)
		if v.Counts.Failed != 2 || v.FailedBySubCode[openapisim.SubCodeNotSubscribed] != 2 {
			t.Fatalf("%+v", v)
		}
	})
}

// dialFailures fails the first left calls as a refused dial would: before
// anything is written.
type dialFailures struct {
	left   int64
	failed atomic.Int64
}

func (d *dialFailures) RoundTrip(r *http.Request) (*http.Response, error) {
	if d.failed.Add(1) <= d.left {
		return nil, &net.OpError{Op: "dial", Net: "tcp", Err: errors.New("connection refused")}
	}
	d.failed.Add(-1)
	return http.DefaultTransport.RoundTrip(r)
}

func TestSender_Stop(t *testing.T) {
	t.Parallel()

	// Alipay refuses the template with the shared data: the batch stops,
	// its pending recipients cancelled.
	t.Run("OKTemplateIllegal", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t, options{})
		ids := users(1, 10)
		e.sim.FailUser(ids[2], "40004", "USER_TEMPLATE_ILLEGAL")
		id := e.create(t, request(ids))
		e.start(t, nil, func(c *batchsend.Config) { c.Concurrency = 1 })
		v := e.wait(t, id, notify.BatchStopped)
		if v.StopReason != notify.StopTemplateIllegal || v.Counts.Sent != 2 || v.Counts.Failed != 1 || v.Counts.Cancelled != 7 || e.events(t, id) != 1 {
			t.Fatalf("%+v", v)
		}
		time.Sleep(100 * time.Millisecond)
		if n := len(e.sim.Calls(send)); n != 3 {
			t.Fatalf("%d calls", n)
		}
	})

	// The merchant cancels its authorization mid-batch: the batch stops at
	// the next claim, with the reason.
	t.Run("OKAuthorizationCancelled", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t, options{})
		e.authorize(t)
		e.sim.SetFailure(send, 1, openapisim.Fault{Delay: 20 * time.Millisecond})
		r := request(users(1, 200))
		r.AuthAppID = testkit.MerchantAppID
		id := e.create(t, r)
		e.start(t, nil, func(c *batchsend.Config) { c.Concurrency = 2 })
		until(t, "a few sends", func() bool { return len(e.sim.Sent()) >= 4 })
		e.cancelAuthorization(t)
		v := e.wait(t, id, notify.BatchStopped)
		if v.StopReason != notify.StopAuthorizationCancelled || v.Counts.Cancelled == 0 || v.Counts.Sent == 200 {
			t.Fatalf("%+v", v)
		}
		until(t, "the sends in flight to end", func() bool { return e.batch(t, id).Counts.Sending == 0 })
		n := len(e.sim.Sent())
		time.Sleep(150 * time.Millisecond)
		if len(e.sim.Sent()) != n {
			t.Fatal("sends after the batch stopped")
		}
		for _, m := range e.sim.Sent() {
			if m.AuthAppID != testkit.MerchantAppID {
				t.Fatalf("%+v", m)
			}
		}
		cancelled := e.recipients(t, id, notify.RecipientCancelled)
		if !strings.Contains(cancelled[0].Error, "authorization_cancelled") {
			t.Fatalf("%+v", cancelled[0])
		}
	})

	// Alipay refuses the merchant's token (revoked on its side before the
	// notification came): 20001, the batch stops.
	t.Run("OKTokenRefused", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t, options{})
		e.authorize(t)
		e.sim.Revoke(e.app.ID, testkit.MerchantAppID)
		r := request(users(1, 20))
		r.AuthAppID = testkit.MerchantAppID
		id := e.create(t, r)
		e.start(t, nil, func(c *batchsend.Config) { c.Concurrency = 1 })
		v := e.wait(t, id, notify.BatchStopped)
		if v.StopReason != notify.StopAuthorizationCancelled || v.Counts.Failed != 1 || v.FailedBySubCode["aop.invalid-app-auth-token"] != 1 || v.Counts.Cancelled != 19 {
			t.Fatalf("%+v", v)
		}
	})

	t.Run("ErrNeverAuthorized", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t, options{})
		r := request(users(1, 1))
		r.AuthAppID = testkit.MerchantAppID
		if _, _, err := e.admin.Create(context.Background(), r, ""); notify.ErrorCode(err) != notify.ENOTFOUND {
			t.Fatalf("%v", err)
		}
		e.authorize(t)
		e.cancelAuthorization(t)
		if _, _, err := e.admin.Create(context.Background(), r, ""); notify.ErrorCode(err) != notify.ECONFLICT {
			t.Fatalf("%v", err)
		}
		if n := e.count(t, `SELECT count(*) FROM template_message_batches`); n != 0 {
			t.Fatalf("%d batches", n)
		}
	})
}

func TestSender_Steer(t *testing.T) {
	t.Parallel()
	ctx := context.Background()

	t.Run("OKCancel", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t, options{})
		e.sim.SetFailure(send, 1, openapisim.Fault{Delay: 20 * time.Millisecond})
		id := e.create(t, request(users(1, 200)))
		e.start(t, nil, nil)
		until(t, "a few sends", func() bool { return len(e.sim.Sent()) >= 8 })
		v, err := e.admin.Cancel(ctx, id)
		if err != nil || v.Status != notify.BatchCancelled || v.Counts.Cancelled == 0 {
			t.Fatalf("%+v %v", v, err)
		}
		calls := len(e.sim.Calls(send))
		until(t, "the sends in flight to end", func() bool { return e.batch(t, id).Counts.Sending == 0 })
		n := len(e.sim.Calls(send))
		time.Sleep(200 * time.Millisecond)
		if m := len(e.sim.Calls(send)); m != n || n > calls+4 {
			t.Fatalf("%d calls at the cancel, %d once the 4 in flight ended, %d later", calls, n, m)
		}
		v = e.batch(t, id)
		if v.Counts.Sent+v.Counts.Cancelled != 200 || e.events(t, id) != 1 {
			t.Fatalf("%+v", v.Counts)
		}
		if _, err := e.admin.Resume(ctx, id); notify.ErrorCode(err) != notify.ECONFLICT {
			t.Fatalf("resume a cancelled batch: %v", err)
		}
		if _, err := e.admin.RetryUnknown(ctx, id); notify.ErrorCode(err) != notify.ECONFLICT {
			t.Fatalf("retry a cancelled batch: %v", err)
		}
		if v, err := e.admin.Cancel(ctx, id); err != nil || v.Status != notify.BatchCancelled || e.events(t, id) != 1 {
			t.Fatalf("cancel again: %+v %v", v, err)
		}
	})

	t.Run("OKPauseResume", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t, options{})
		e.sim.SetFailure(send, 1, openapisim.Fault{Delay: 10 * time.Millisecond})
		id := e.create(t, request(users(1, 60)))
		e.start(t, nil, nil)
		until(t, "a few sends", func() bool { return len(e.sim.Sent()) >= 8 })
		if v, err := e.admin.Pause(ctx, id); err != nil || v.Status != notify.BatchPaused {
			t.Fatalf("%+v %v", v, err)
		}
		until(t, "the sends in flight to end", func() bool { return e.batch(t, id).Counts.Sending == 0 })
		n := len(e.sim.Sent())
		time.Sleep(150 * time.Millisecond)
		if len(e.sim.Sent()) != n || n == 60 {
			t.Fatalf("%d sends while paused (%d before)", len(e.sim.Sent()), n)
		}
		if v, err := e.admin.Pause(ctx, id); err != nil || v.Status != notify.BatchPaused {
			t.Fatalf("pause again: %+v %v", v, err)
		}
		if v, err := e.admin.Resume(ctx, id); err != nil || v.Status != notify.BatchRunning {
			t.Fatalf("%+v %v", v, err)
		}
		if v := e.wait(t, id, notify.BatchFinished); v.Counts.Sent != 60 {
			t.Fatalf("%+v", v.Counts)
		}
		e.once(t)
	})

	// Unknown recipients are sent again only when asked.
	t.Run("OKRetryUnknown", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t, options{})
		for range 2 {
			e.sim.Fail(send, openapisim.Fault{Code: "20000", Msg: "Service Currently Unavailable", SubCode: "isp.unknow-error"})
		}
		id := e.create(t, request(users(1, 5)))
		e.start(t, nil, func(c *batchsend.Config) { c.Concurrency = 1 })
		v := e.wait(t, id, notify.BatchFinished)
		if v.Counts.Unknown != 2 || v.Counts.Sent != 3 {
			t.Fatalf("%+v", v.Counts)
		}
		v, err := e.admin.RetryUnknown(ctx, id)
		if err != nil || v.Requeued == nil || *v.Requeued != 2 || v.Status != notify.BatchRunning || v.Counts.Unknown != 0 {
			t.Fatalf("%+v %v", v, err)
		}
		v = e.wait(t, id, notify.BatchFinished)
		if v.Counts.Sent != 5 || e.events(t, id) != 1 || len(e.sim.Sent()) != 5 {
			t.Fatalf("%+v, %d events", v.Counts, e.events(t, id))
		}
		if r := e.recipients(t, id, notify.RecipientSent); r[0].Attempts != 2 {
			t.Fatalf("%+v", r[0])
		}
		// Nothing unknown: nothing changes.
		if v, err := e.admin.RetryUnknown(ctx, id); err != nil || *v.Requeued != 0 || v.Status != notify.BatchFinished {
			t.Fatalf("%+v %v", v, err)
		}
	})
}

// Two replicas on one database: every recipient is sent once, and both
// send.
func TestSender_Replicas(t *testing.T) {
	t.Parallel()
	e := newEnv(t, options{})
	e.sim.SetFailure(send, 1, openapisim.Fault{Delay: 5 * time.Millisecond})
	id := e.create(t, request(users(1, 300)))
	a := e.start(t, nil, nil)
	b := e.start(t, nil, nil)
	v := e.wait(t, id, notify.BatchFinished)
	if v.Counts.Sent != 300 || e.events(t, id) != 1 {
		t.Fatalf("%+v", v.Counts)
	}
	if seen := e.once(t); len(seen) != 300 || len(e.sim.Calls(send)) != 300 {
		t.Fatalf("%d users in %d calls", len(seen), len(e.sim.Calls(send)))
	}
	if sa, sb := a.sent(t), b.sent(t); sa == 0 || sb == 0 || sa+sb != 300 {
		t.Fatalf("replica a sent %v, b %v", sa, sb)
	}
}

// A replica stops mid-batch with claims outstanding and never records
// them (kill -9, or the database lost): once the claims expire they are
// unknown, and another replica sends the rest; nobody gets it twice.
func TestSender_Killed(t *testing.T) {
	t.Parallel()
	e := newEnv(t, options{})
	e.sim.SetFailure(send, 1, openapisim.Fault{Delay: 100 * time.Millisecond})
	id := e.create(t, request(users(1, 40)))
	dead := e.start(t, failingStore{e.db}, nil)
	until(t, "calls in flight", func() bool { return e.sim.Stats().Calls >= 1 })
	dead.stop()
	claimed := e.batch(t, id).Counts.Sending
	if claimed == 0 {
		t.Fatal("no claim left outstanding")
	}
	e.start(t, nil, func(c *batchsend.Config) { c.Lease, c.Sweep = 300*time.Millisecond, 20*time.Millisecond })
	v := e.wait(t, id, notify.BatchFinished)
	if v.Counts.Unknown != claimed || v.Counts.Sent != 40-claimed {
		t.Fatalf("%+v; %d claimed by the dead replica", v.Counts, claimed)
	}
	if seen := e.once(t); len(seen) != 40 {
		t.Fatalf("%d users got it", len(seen))
	}
	for _, r := range e.recipients(t, id, notify.RecipientUnknown) {
		if !strings.Contains(r.Error, "claim expired") {
			t.Fatalf("%+v", r)
		}
	}
}

// Stopping a Sender ends the calls in flight and records them.
func TestSender_Shutdown(t *testing.T) {
	t.Parallel()
	e := newEnv(t, options{})
	e.sim.SetFailure(send, 1, openapisim.Fault{Delay: 100 * time.Millisecond})
	id := e.create(t, request(users(1, 40)))
	s := e.start(t, nil, nil)
	until(t, "calls in flight", func() bool { return e.sim.Stats().Calls >= 1 })
	s.stop()
	v := e.batch(t, id)
	if v.Counts.Sending != 0 || v.Counts.Sent == 0 || v.Counts.Sent != len(e.sim.Sent()) || v.Status != notify.BatchRunning {
		t.Fatalf("%+v, %d delivered", v.Counts, len(e.sim.Sent()))
	}
}

// Two replicas hold the app's rate together (gross bounds only: at most
// the burst and rate × time, and not far below).
func TestSender_Rate(t *testing.T) {
	t.Parallel()
	const rate, n = 20.0, 30
	e := newEnv(t, options{})
	id := e.create(t, request(users(1, n)))
	rates := batchsend.Rates{Default: rate}
	a := e.start(t, nil, func(c *batchsend.Config) { c.Rates = rates })
	b := e.start(t, nil, func(c *batchsend.Config) { c.Rates = rates })
	e.wait(t, id, notify.BatchFinished)
	times := e.sim.SendTimes()
	if len(times) != n {
		t.Fatalf("%d sends", len(times))
	}
	burst := max(2, rate/10)
	for i, at := range times {
		// The bucket starts full (burst) and refills at rate, by the
		// database's clock: the i+1-th send comes no sooner than this, two
		// sends' worth of slack (times are the simulator's, on arrival: the
		// first send, on a new connection, can arrive late, and later ones
		// then seem early by its delay).
		if allowed := burst + rate*at.Sub(times[0]).Seconds() + 2; float64(i+1) > allowed {
			t.Fatalf("send %d at %s: more than %.1f allowed", i+1, at.Sub(times[0]), allowed)
		}
	}
	if took := times[n-1].Sub(times[0]); took > 10*time.Second {
		t.Fatalf("%d sends took %s at %v/s", n, took, rate)
	}
	if a.sent(t) == 0 || b.sent(t) == 0 {
		t.Fatalf("replica a sent %v, b %v", a.sent(t), b.sent(t))
	}
}

// An error answer whose signature does not verify (unsigned) changes
// nothing that cannot be taken back: its recipient is unknown (it may have
// been sent; never tried again by itself), no other recipient fails, the
// batch is never stopped; a refusal of the whole batch pauses it.
func TestSender_Unverified(t *testing.T) {
	t.Parallel()
	ctx := context.Background()

	// USER_TEMPLATE_ILLEGAL with the shared data, unsigned: signed, it
	// stops the batch (TestSender_Stop).
	t.Run("OKTemplateIllegal", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t, options{})
		e.sim.Fail(send, openapisim.Fault{Code: "40004", Msg: "Business Failed", SubCode: "USER_TEMPLATE_ILLEGAL", Unsigned: true})
		id := e.create(t, request(users(1, 10)))
		e.start(t, nil, func(c *batchsend.Config) { c.Concurrency = 1 })
		v := e.wait(t, id, notify.BatchPaused)
		if v.StopReason != notify.PauseUnverifiedRefusal || v.Counts.Unknown != 1 || v.Counts.Failed != 0 || v.Counts.Cancelled != 0 ||
			v.Counts.Pending != 9 || e.events(t, id) != 0 {
			t.Fatalf("%+v", v)
		}
		u := e.recipients(t, id, notify.RecipientUnknown)
		if u[0].Row != 1 || u[0].SubCode != "USER_TEMPLATE_ILLEGAL" || !strings.Contains(u[0].Error, "did not verify") {
			t.Fatalf("%+v", u[0])
		}
		if _, err := e.admin.Resume(ctx, id); err != nil {
			t.Fatal(err)
		}
		v = e.wait(t, id, notify.BatchFinished)
		if v.Counts.Sent != 9 || v.Counts.Unknown != 1 || v.StopReason != "" || len(e.sim.Calls(send)) != 10 {
			t.Fatalf("%+v, %d calls", v, len(e.sim.Calls(send)))
		}
	})

	// A refusal of one recipient, unsigned, that was in fact delivered:
	// unknown, never sent again; the batch goes on.
	t.Run("OKRecipient", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t, options{})
		e.sim.Fail(send, openapisim.Fault{Code: "40004", SubCode: "USER_SUBSCRIPTION_USED_UP", Unsigned: true, Deliver: true})
		e.sim.Fail(send, openapisim.Fault{Code: "40005", Msg: "Call Limited", Unsigned: true, Deliver: true})
		id := e.create(t, request(users(1, 6)))
		e.start(t, nil, func(c *batchsend.Config) { c.Concurrency = 1 })
		v := e.wait(t, id, notify.BatchFinished)
		if v.Counts.Unknown != 2 || v.Counts.Sent != 4 || v.Counts.Failed != 0 || v.StopReason != "" {
			t.Fatalf("%+v", v)
		}
		time.Sleep(100 * time.Millisecond)
		if seen := e.once(t); len(seen) != 6 || len(e.sim.Calls(send)) != 6 {
			t.Fatalf("%d delivered in %d calls: an unsigned refusal was tried again", len(seen), len(e.sim.Calls(send)))
		}
	})

	// The merchant's token refused, unsigned: paused, not stopped.
	t.Run("OKTokenRefused", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t, options{})
		e.authorize(t)
		e.sim.Fail(send, openapisim.Fault{Code: "20001", Msg: "Insufficient Token Permissions", SubCode: "aop.invalid-app-auth-token", Unsigned: true})
		r := request(users(1, 5))
		r.AuthAppID = testkit.MerchantAppID
		id := e.create(t, r)
		e.start(t, nil, func(c *batchsend.Config) { c.Concurrency = 1 })
		v := e.wait(t, id, notify.BatchPaused)
		if v.StopReason != notify.PauseUnverifiedRefusal || v.Counts.Unknown != 1 || v.Counts.Pending != 4 {
			t.Fatalf("%+v", v)
		}
	})

	// The pre-check's query refused unsigned: tried again (a query
	// changes nothing), the batch paused when it refused the batch.
	t.Run("OKPrecheck", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t, options{})
		ids := users(1, 3)
		for _, u := range ids {
			e.sim.Subscribe(u, "tpl1", openapisim.Subscription{State: "1", Type: "longterm"})
		}
		e.sim.Fail(openapisim.MethodSubscribeQuery, openapisim.Fault{Code: "40002", SubCode: "isv.invalid-signature", Unsigned: true})
		r := request(ids)
		r.Precheck = true
		id := e.create(t, r)
		e.start(t, nil, func(c *batchsend.Config) { c.Concurrency = 1 })
		v := e.wait(t, id, notify.BatchPaused)
		if v.StopReason != notify.PauseUnverifiedRefusal || v.Counts.Pending != 3 || v.Counts.Failed != 0 || len(e.sim.Calls(send)) != 0 {
			t.Fatalf("%+v", v)
		}
		if _, err := e.admin.Resume(ctx, id); err != nil {
			t.Fatal(err)
		}
		if v := e.wait(t, id, notify.BatchFinished); v.Counts.Sent != 3 {
			t.Fatalf("%+v", v)
		}
		e.once(t)
	})
}

// With the pre-check on, the query may take the call's whole timeout: a
// cancel, stop or pause meanwhile is seen before the send, which is then
// not made.
func TestSender_PrecheckSteered(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	slow := func(t *testing.T) (*env, int64) {
		e := newEnv(t, options{})
		ids := users(1, 3)
		for _, u := range ids {
			e.sim.Subscribe(u, "tpl1", openapisim.Subscription{State: "1", Type: "longterm"})
		}
		e.sim.Fail(openapisim.MethodSubscribeQuery, openapisim.Fault{Delay: 400 * time.Millisecond})
		r := request(ids)
		r.Precheck = true
		id := e.create(t, r)
		e.start(t, nil, func(c *batchsend.Config) { c.Concurrency = 1 })
		until(t, "the slow query", func() bool { return len(e.sim.Calls(openapisim.MethodSubscribeQuery)) == 1 })
		return e, id
	}
	t.Run("OKCancel", func(t *testing.T) {
		t.Parallel()
		e, id := slow(t)
		if _, err := e.admin.Cancel(ctx, id); err != nil {
			t.Fatal(err)
		}
		until(t, "the query in flight to end", func() bool { return e.batch(t, id).Counts.Sending == 0 })
		time.Sleep(100 * time.Millisecond)
		v := e.batch(t, id)
		if n := len(e.sim.Calls(send)); n != 0 || v.Counts.Cancelled != 3 || v.Counts.Pending != 0 {
			t.Fatalf("%d sends after the cancel; %+v", n, v.Counts)
		}
		if r := e.recipients(t, id, notify.RecipientCancelled); r[0].Error != "batch cancelled" {
			t.Fatalf("%+v", r[0])
		}
	})
	t.Run("OKPause", func(t *testing.T) {
		t.Parallel()
		e, id := slow(t)
		if _, err := e.admin.Pause(ctx, id); err != nil {
			t.Fatal(err)
		}
		until(t, "the query in flight to end", func() bool { return e.batch(t, id).Counts.Sending == 0 })
		time.Sleep(100 * time.Millisecond)
		if v := e.batch(t, id); len(e.sim.Calls(send)) != 0 || v.Counts.Pending != 3 {
			t.Fatalf("%d sends while paused; %+v", len(e.sim.Calls(send)), v.Counts)
		}
		if _, err := e.admin.Resume(ctx, id); err != nil {
			t.Fatal(err)
		}
		if v := e.wait(t, id, notify.BatchFinished); v.Counts.Sent != 3 {
			t.Fatalf("%+v", v.Counts)
		}
		e.once(t)
	})
}

// A call in flight at the cancel that Alipay answers 40005 (or that never
// reached it) would be tried again: its recipient is cancelled instead,
// and nothing is left pending in the cancelled batch.
func TestSender_CancelInFlightRetry(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e := newEnv(t, options{})
	e.sim.Fail(send, openapisim.Fault{Delay: 400 * time.Millisecond, Code: "40005", Msg: "Call Limited", SubCode: openapisim.SubCodeCallLimited})
	id := e.create(t, request(users(1, 3)))
	e.start(t, nil, func(c *batchsend.Config) { c.Concurrency = 1 })
	until(t, "the call in flight", func() bool { return len(e.sim.Calls(send)) == 1 })
	if _, err := e.admin.Cancel(ctx, id); err != nil {
		t.Fatal(err)
	}
	until(t, "the call in flight to end", func() bool { return e.batch(t, id).Counts.Sending == 0 })
	v := e.batch(t, id)
	if v.Counts.Pending != 0 || v.Counts.Cancelled != 3 || len(e.sim.Sent()) != 0 {
		t.Fatalf("%+v", v.Counts)
	}
	if r := e.recipients(t, id, notify.RecipientCancelled); r[0].Code != "40005" || r[0].Error != "batch cancelled" {
		t.Fatalf("%+v", r[0])
	}
}

// An expired merchant token pauses the batch (the refresher may renew it);
// resumed once it is good, the batch sends the rest. Alipay's own "token
// timed out" (signed) does the same, its recipient pending again.
func TestSender_TokenExpired(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	expire := func(t *testing.T, e *env, at string) {
		t.Helper()
		if _, err := e.db.Pool.Exec(ctx, `UPDATE authorizations SET expires_at = now() + $1::interval WHERE auth_app_id = $2`, at, testkit.MerchantAppID); err != nil {
			t.Fatal(err)
		}
	}
	t.Run("OKStored", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t, options{})
		e.authorize(t)
		r := request(users(1, 4))
		r.AuthAppID = testkit.MerchantAppID
		id := e.create(t, r)
		expire(t, e, "-1 minute")
		before := e.sim.Requests()
		e.start(t, nil, nil)
		v := e.wait(t, id, notify.BatchPaused)
		if v.StopReason != notify.PauseTokenExpired || v.Counts.Pending != 4 || e.sim.Requests() != before || e.events(t, id) != 0 {
			t.Fatalf("%+v", v)
		}
		expire(t, e, "30 days") // refreshed
		if _, err := e.admin.Resume(ctx, id); err != nil {
			t.Fatal(err)
		}
		if v := e.wait(t, id, notify.BatchFinished); v.Counts.Sent != 4 {
			t.Fatalf("%+v", v.Counts)
		}
	})
	t.Run("OKAlipayTimedOut", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t, options{})
		e.authorize(t)
		e.sim.Fail(send, openapisim.Fault{Code: "20001", Msg: "Insufficient Token Permissions", SubCode: "aop.app-auth-token-time-out"})
		r := request(users(1, 4))
		r.AuthAppID = testkit.MerchantAppID
		id := e.create(t, r)
		e.start(t, nil, func(c *batchsend.Config) { c.Concurrency = 1 })
		v := e.wait(t, id, notify.BatchPaused)
		if v.StopReason != notify.PauseTokenExpired || v.Counts.Pending != 4 || v.Counts.Failed != 0 {
			t.Fatalf("%+v", v)
		}
		if _, err := e.admin.Resume(ctx, id); err != nil {
			t.Fatal(err)
		}
		if v := e.wait(t, id, notify.BatchFinished); v.Counts.Sent != 4 {
			t.Fatalf("%+v", v.Counts)
		}
		if r := e.recipients(t, id, notify.RecipientSent); r[0].Attempts != 2 {
			t.Fatalf("%+v", r[0])
		}
	})
}
