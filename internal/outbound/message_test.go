package outbound_test

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/alipay-notify-gateway/gateway/internal/notify"
	"github.com/alipay-notify-gateway/gateway/internal/openapisim"
	"github.com/alipay-notify-gateway/gateway/internal/outbound"
	"github.com/alipay-notify-gateway/gateway/internal/testkit"
)

const send = openapisim.MethodTemplateMessageSend

func TestService_SendTemplateMessage(t *testing.T) {
	t.Parallel()
	e := newEnv(t, options{timeout: 500 * time.Millisecond})
	ctx := context.Background()

	t.Run("OK", func(t *testing.T) {
		s, replayed, err := e.svc.SendTemplateMessage(ctx, message(), "")
		if err != nil || replayed || s.Status != outbound.SendSent || s.Code != "10000" || s.AppID != testkit.AppID || s.FinishedAt == nil {
			t.Fatalf("%+v %v %v", s, replayed, err)
		}
		got := e.sim.Sent()
		if len(got) != 1 || got[0].ToUserID != userID || got[0].AuthAppID != "" ||
			got[0].Data != `{"keyword1":{"value":"12:00"},"keyword2":{"value":"支付宝"}}` {
			t.Fatalf("sent %+v", got)
		}
		if calls := e.sim.Calls(send); calls[len(calls)-1].Params.Get("app_auth_token") != "" {
			t.Fatal("a token went out on the ISV's own message")
		}
		if st, code, _ := e.row(t, s.ID); st != outbound.SendSent || code != "10000" {
			t.Fatalf("row %s %s", st, code)
		}
	})
	t.Run("OKDataString", func(t *testing.T) {
		m := message()
		m.Data, m.ToUserID, m.ToOpenID = []byte(`"{\"keyword1\":{\"value\":\"x\"}}"`), "", "074a1CcTG1LelxKe4xQC0zgNdId0nxi95b5lsNpazWYoCo5"
		if _, _, err := e.svc.SendTemplateMessage(ctx, m, ""); err != nil {
			t.Fatal(err)
		}
		got := e.sim.Sent()
		if last := got[len(got)-1]; last.Data != `{"keyword1":{"value":"x"}}` || last.ToOpenID == "" || last.ToUserID != "" {
			t.Fatalf("%+v", last)
		}
	})
	t.Run("ErrInvalid", func(t *testing.T) {
		calls := len(e.sim.Calls(send))
		for name, edit := range map[string]func(*outbound.TemplateMessage){
			"no recipient":   func(m *outbound.TemplateMessage) { m.ToUserID = "" },
			"two recipients": func(m *outbound.TemplateMessage) { m.ToOpenID = "x" },
			"no template":    func(m *outbound.TemplateMessage) { m.UserTemplateID = "" },
			"no page":        func(m *outbound.TemplateMessage) { m.Page = "" },
			"no data":        func(m *outbound.TemplateMessage) { m.Data = nil },
			"data array":     func(m *outbound.TemplateMessage) { m.Data = []byte(`[1]`) },
			"data empty":     func(m *outbound.TemplateMessage) { m.Data = []byte(`{}`) },
			"data bad text":  func(m *outbound.TemplateMessage) { m.Data = []byte(`"{nope"`) },
		} {
			m := message()
			edit(&m)
			if _, _, err := e.svc.SendTemplateMessage(ctx, m, ""); notify.ErrorCode(err) != notify.EINVALID {
				t.Errorf("%s: %v", name, err)
			}
		}
		if _, _, err := e.svc.SendTemplateMessage(ctx, message(), strings.Repeat("k", 256)); notify.ErrorCode(err) != notify.EINVALID {
			t.Errorf("long key: %v", err)
		}
		if len(e.sim.Calls(send)) != calls {
			t.Fatal("an invalid message reached Alipay")
		}
	})
	t.Run("ErrUnknownApp", func(t *testing.T) {
		m := message()
		m.AppID = "2021000000009999"
		_, _, err := e.svc.SendTemplateMessage(ctx, m, "")
		wantCode(t, err, notify.ENOTFOUND, "unknown_app")
	})
	t.Run("ErrBusiness", func(t *testing.T) {
		sent := len(e.sim.Sent())
		e.sim.Fail(send, openapisim.Fault{Code: "40004", Msg: "Business Failed", SubCode: "USER_TEMPLATE_ILLEGAL", SubMsg: "模板不合法"})
		s, _, err := e.svc.SendTemplateMessage(ctx, message(), "")
		wantCode(t, err, outbound.EBUSINESS)
		var be *outbound.BusinessError
		if !errors.As(err, &be) || be.Code != "40004" || be.SubCode != "USER_TEMPLATE_ILLEGAL" || be.SubMsg != "模板不合法" || !be.Verified {
			t.Fatalf("%#v", err)
		}
		if st, code, sub := e.row(t, s.ID); st != outbound.SendFailed || code != "40004" || sub != "USER_TEMPLATE_ILLEGAL" {
			t.Fatalf("row %s %s %s", st, code, sub)
		}
		if len(e.sim.Sent()) != sent {
			t.Fatal("sent")
		}
	})
	// An unsigned error answer (as Alipay gives before it knows the app):
	// the single send still answers and records it as refused, marked
	// unverified for the callers that must not act on it (batches).
	t.Run("ErrBusinessUnsigned", func(t *testing.T) {
		e.sim.Fail(send, openapisim.Fault{Code: "40002", Msg: "Invalid Arguments", SubCode: "isv.invalid-signature", Unsigned: true})
		s, _, err := e.svc.SendTemplateMessage(ctx, message(), "")
		wantCode(t, err, outbound.EBUSINESS)
		var be *outbound.BusinessError
		if !errors.As(err, &be) || be.Code != "40002" || be.SubCode != "isv.invalid-signature" || be.Verified {
			t.Fatalf("%#v", err)
		}
		if st, code, sub := e.row(t, s.ID); st != outbound.SendFailed || code != "40002" || sub != "isv.invalid-signature" {
			t.Fatalf("row %s %s %s", st, code, sub)
		}
	})
	t.Run("ErrAlipayUnavailable", func(t *testing.T) {
		e.sim.Fail(send, openapisim.Fault{Code: "20000", Msg: "Service Currently Unavailable", SubCode: "isp.unknow-error", SubMsg: "系统繁忙"})
		s, _, err := e.svc.SendTemplateMessage(ctx, message(), "")
		wantCode(t, err, outbound.EUPSTREAM)
		if st, code, _ := e.row(t, s.ID); st != outbound.SendUnknown || code != "20000" {
			t.Fatalf("row %s %s", st, code)
		}
	})
	for _, tc := range []struct {
		name   string
		fault  openapisim.Fault
		reason string
	}{
		{"Err5xx", openapisim.Fault{HTTPStatus: 502}, "alipay_unreachable"},
		{"ErrTimeout", openapisim.Fault{Hang: true}, "alipay_timeout"},
		{"ErrBadSign", openapisim.Fault{BadSign: true}, "alipay_bad_answer"},
		{"ErrUnsigned", openapisim.Fault{Unsigned: true}, "alipay_bad_answer"},
		{"ErrUnknownCertSN", openapisim.Fault{CertSN: "0123456789abcdef0123456789abcdef"}, "alipay_bad_answer"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e.sim.Fail(send, tc.fault)
			s, _, err := e.svc.SendTemplateMessage(ctx, message(), "")
			wantCode(t, err, outbound.EUPSTREAM, tc.reason)
			if st, _, _ := e.row(t, s.ID); st != outbound.SendUnknown {
				t.Fatalf("row %s; want unknown, never sent", st)
			}
		})
	}
}

func TestService_SendTemplateMessage_RequestSignature(t *testing.T) {
	t.Parallel()
	// The app signs with a key Alipay does not know: the simulator refuses
	// the request before doing anything.
	e := newEnv(t, options{signKey: testkit.OtherKey()})
	s, _, err := e.svc.SendTemplateMessage(context.Background(), message(), "")
	var be *outbound.BusinessError
	if !errors.As(err, &be) || be.SubCode != "isv.invalid-signature" {
		t.Fatalf("%v", err)
	}
	if len(e.sim.Sent()) != 0 || s.Status != outbound.SendFailed {
		t.Fatalf("%+v", s)
	}
}

func TestService_SendTemplateMessage_Idempotency(t *testing.T) {
	t.Parallel()
	e := newEnv(t, options{timeout: 2 * time.Second})
	ctx := context.Background()

	t.Run("OK", func(t *testing.T) {
		first, replayed, err := e.svc.SendTemplateMessage(ctx, message(), "order-1")
		if err != nil || replayed {
			t.Fatal(err)
		}
		again, replayed, err := e.svc.SendTemplateMessage(ctx, message(), "order-1")
		if err != nil || !replayed || again.ID != first.ID || again.Status != outbound.SendSent || again.IdempotencyKey != "order-1" {
			t.Fatalf("%+v %v %v", again, replayed, err)
		}
		if len(e.sim.Calls(send)) != 1 {
			t.Fatalf("%d sends", len(e.sim.Calls(send)))
		}
	})
	t.Run("ErrKeyReused", func(t *testing.T) {
		m := message()
		m.Page = "pages/other"
		_, _, err := e.svc.SendTemplateMessage(ctx, m, "order-1")
		wantCode(t, err, notify.ECONFLICT, "idempotency_key_reused")
	})
	t.Run("ReplayBusinessError", func(t *testing.T) {
		e.sim.Fail(send, openapisim.Fault{Code: "40004", Msg: "Business Failed", SubCode: "FORM_ID_OVER_TIME", SubMsg: "formId过期"})
		calls := len(e.sim.Calls(send))
		for i := 0; i < 2; i++ {
			_, replayed, err := e.svc.SendTemplateMessage(ctx, message(), "order-2")
			var be *outbound.BusinessError
			if !errors.As(err, &be) || be.SubCode != "FORM_ID_OVER_TIME" || replayed != (i == 1) {
				t.Fatalf("try %d: %v %v", i, replayed, err)
			}
		}
		if len(e.sim.Calls(send)) != calls+1 {
			t.Fatal("the refused message was tried again")
		}
	})
	t.Run("ReplayUnknown", func(t *testing.T) {
		e.sim.Fail(send, openapisim.Fault{HTTPStatus: 500})
		calls := len(e.sim.Calls(send))
		_, _, err := e.svc.SendTemplateMessage(ctx, message(), "order-3")
		wantCode(t, err, outbound.EUPSTREAM)
		_, replayed, err := e.svc.SendTemplateMessage(ctx, message(), "order-3")
		wantCode(t, err, outbound.EUPSTREAM, "outcome_unknown")
		if !replayed || len(e.sim.Calls(send)) != calls+1 {
			t.Fatal("a send of unknown outcome was made again")
		}
	})
	t.Run("Concurrent", func(t *testing.T) {
		e.sim.Fail(send, openapisim.Fault{Delay: 300 * time.Millisecond})
		sent := len(e.sim.Sent())
		const n = 8
		var (
			wg                         sync.WaitGroup
			mu                         sync.Mutex
			fresh, replays, inProgress int
			others                     []error
		)
		for i := 0; i < n; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				_, replayed, err := e.svc.SendTemplateMessage(ctx, message(), "order-4")
				mu.Lock()
				defer mu.Unlock()
				switch {
				case err == nil && !replayed:
					fresh++
				case err == nil:
					replays++
				case notify.ErrorReason(err) == "in_progress":
					inProgress++
				default:
					others = append(others, err)
				}
			}()
		}
		wg.Wait()
		if fresh != 1 || len(others) > 0 || fresh+replays+inProgress != n {
			t.Fatalf("fresh %d replays %d in progress %d others %v", fresh, replays, inProgress, others)
		}
		if len(e.sim.Sent()) != sent+1 {
			t.Fatalf("%d sends; want 1", len(e.sim.Sent())-sent)
		}
	})
}

// TestService_SendTemplateMessage_IdempotencyPerApp: an Idempotency-Key is
// the app's: the same key used for two apps sends two messages, and a
// retry within each app replays its own.
func TestService_SendTemplateMessage_IdempotencyPerApp(t *testing.T) {
	t.Parallel()
	e := newEnv(t, options{otherApp: true})
	ctx := context.Background()
	forApp := func(appID string) outbound.TemplateMessage {
		m := message()
		m.AppID = appID
		return m
	}
	t.Run("OK", func(t *testing.T) {
		first, replayed, err := e.svc.SendTemplateMessage(ctx, forApp(testkit.AppID), "shared-1")
		if err != nil || replayed {
			t.Fatalf("%v %v", replayed, err)
		}
		other, replayed, err := e.svc.SendTemplateMessage(ctx, forApp(testkit.OtherAppID), "shared-1")
		if err != nil || replayed || other.ID == first.ID || other.AppID != testkit.OtherAppID {
			t.Fatalf("the other app's send: %+v %v %v", other, replayed, err)
		}
		for _, want := range []*outbound.Send{first, other} {
			again, replayed, err := e.svc.SendTemplateMessage(ctx, forApp(want.AppID), "shared-1")
			if err != nil || !replayed || again.ID != want.ID {
				t.Fatalf("retry for %s: %+v %v %v", want.AppID, again, replayed, err)
			}
		}
		sent := e.sim.Sent()
		if len(sent) != 2 || sent[0].AppID != testkit.AppID || sent[1].AppID != testkit.OtherAppID {
			t.Fatalf("%+v", sent)
		}
	})
}

func TestService_SendTemplateMessage_Abandoned(t *testing.T) {
	t.Parallel()
	// A pending send left by a process that died is reported as of unknown
	// outcome once it is older than twice the call timeout (plus 30s).
	now := time.Now()
	clock := func() time.Time { return now }
	e := newEnv(t, options{timeout: time.Second, now: func() time.Time { return clock() }})
	ctx := context.Background()
	m := message()
	m.AppID = testkit.AppID
	req, _ := json.Marshal(m)
	s := &outbound.Send{AppID: testkit.AppID, IdempotencyKey: "dead-1", Request: req, Status: outbound.SendPending}
	// Record a pending send as a dead process would have left it, with the
	// request hash the Service computes (taken from a real send of m).
	if _, _, err := e.svc.SendTemplateMessage(ctx, m, "probe"); err != nil {
		t.Fatal(err)
	}
	probe, err := e.db.SendByKey(ctx, testkit.AppID, "probe")
	if err != nil {
		t.Fatal(err)
	}
	s.RequestHash = probe.RequestHash
	if _, err := e.db.StartSend(ctx, s); err != nil {
		t.Fatal(err)
	}
	t.Run("ErrInProgress", func(t *testing.T) {
		_, _, err := e.svc.SendTemplateMessage(ctx, m, "dead-1")
		wantCode(t, err, notify.ECONFLICT, "in_progress")
	})
	t.Run("ErrAbandoned", func(t *testing.T) {
		later := now.Add(3 * time.Minute)
		clock = func() time.Time { return later }
		_, replayed, err := e.svc.SendTemplateMessage(ctx, m, "dead-1")
		wantCode(t, err, outbound.EUPSTREAM, "outcome_unknown")
		if !replayed || len(e.sim.Calls(send)) != 1 {
			t.Fatal("an abandoned send was made again")
		}
	})
}
