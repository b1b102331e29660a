package outbound_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/alipay-notify-gateway/gateway/internal/notify"
	"github.com/alipay-notify-gateway/gateway/internal/openapisim"
	"github.com/alipay-notify-gateway/gateway/internal/outbound"
	"github.com/alipay-notify-gateway/gateway/internal/pgtest"
)

func TestService_CompleteAuthorization(t *testing.T) {
	t.Parallel()
	e := newEnv(t, options{})
	ctx := context.Background()

	t.Run("OK", func(t *testing.T) {
		token := e.authorize(t)
		var (
			status             string
			sealed, sealed2    []byte
			expires, reExpires time.Time
			notifyID           string
		)
		err := e.db.Pool.QueryRow(ctx, `SELECT status, app_auth_token, app_refresh_token, expires_at, refresh_expires_at, event_notify_id
            FROM authorizations WHERE app_id = $1 AND auth_app_id = $2`, keyAppID, merchant).Scan(&status, &sealed, &sealed2, &expires, &reExpires, &notifyID)
		if err != nil {
			t.Fatal(err)
		}
		if status != "authorized" || string(sealed) == token || len(sealed2) == 0 {
			t.Fatalf("status %s; tokens must be stored sealed", status)
		}
		opened, err := pgtest.Sealer(t).Open(sealed, notify.TokenOwner(keyAppID, merchant))
		if err != nil || opened != token {
			t.Fatalf("sealed token opens to %q, %v", opened, err)
		}
		// expires_in came as a number, re_expires_in as a string.
		if d := time.Until(expires); d < 364*24*time.Hour || d > 366*24*time.Hour {
			t.Fatalf("expires_at %v", expires)
		}
		if d := time.Until(reExpires); d < 371*24*time.Hour || d > 373*24*time.Hour {
			t.Fatalf("refresh_expires_at %v", reExpires)
		}
		if len(notifyID) < 6 || notifyID[:6] != "oauth:" {
			t.Fatalf("event_notify_id %q", notifyID)
		}
	})
	t.Run("ErrCodeUsed", func(t *testing.T) {
		code := e.sim.IssueCode(keyAppID, merchant, "2088000000000999")
		if _, err := e.svc.CompleteAuthorization(ctx, "", code); err != nil {
			t.Fatal(err)
		}
		_, err := e.svc.CompleteAuthorization(ctx, "", code)
		var be *outbound.BusinessError
		if !errors.As(err, &be) || be.SubCode != "isv.code-invalid" {
			t.Fatalf("%v", err)
		}
	})
	t.Run("ErrMissingCode", func(t *testing.T) {
		_, err := e.svc.CompleteAuthorization(ctx, keyAppID, "")
		wantCode(t, err, notify.EINVALID, "missing_code")
	})
	t.Run("ErrUnknownApp", func(t *testing.T) {
		_, err := e.svc.CompleteAuthorization(ctx, "2021000000009999", "c")
		wantCode(t, err, notify.ENOTFOUND)
	})
	t.Run("ErrUpstream", func(t *testing.T) {
		e.sim.Fail(openapisim.MethodAuthTokenApp, openapisim.Fault{HTTPStatus: 503})
		_, err := e.svc.CompleteAuthorization(ctx, keyAppID, e.sim.IssueCode(keyAppID, merchant, ""))
		wantCode(t, err, outbound.EUPSTREAM)
	})
}

// TestService_CompleteAuthorization_Ordering: the flow's grant is ordered
// with the notifications by time, through the same conditional upsert.
func TestService_CompleteAuthorization_Ordering(t *testing.T) {
	t.Parallel()
	e := newEnv(t, options{})
	ctx := context.Background()
	t.Run("StaleCancel", func(t *testing.T) {
		// A cancellation from before the grant changes nothing.
		e.authorize(t)
		if out := e.cancel(t, time.Now().Add(-time.Hour).UnixMilli()); out.Status != notify.StatusStale {
			t.Fatalf("%+v", out)
		}
		if _, _, err := e.svc.SendTemplateMessage(ctx, onBehalf(), ""); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("Cancel", func(t *testing.T) {
		if out := e.cancel(t, time.Now().Add(200*time.Millisecond).UnixMilli()); out.Status != notify.StatusApplied {
			t.Fatalf("%+v", out)
		}
		_, _, err := e.svc.SendTemplateMessage(ctx, onBehalf(), "")
		wantCode(t, err, notify.ECONFLICT, "authorization_cancelled")
	})
	t.Run("GrantedAgain", func(t *testing.T) {
		time.Sleep(300 * time.Millisecond) // past the cancellation's time
		e.authorize(t)
		if _, _, err := e.svc.SendTemplateMessage(ctx, onBehalf(), ""); err != nil {
			t.Fatal(err)
		}
	})
}

func onBehalf() outbound.TemplateMessage {
	m := message()
	m.AuthAppID = merchant
	return m
}

func TestService_OnBehalf(t *testing.T) {
	t.Parallel()
	e := newEnv(t, options{})
	ctx := context.Background()
	t.Run("ErrUnknownAuthorization", func(t *testing.T) {
		_, _, err := e.svc.SendTemplateMessage(ctx, onBehalf(), "")
		wantCode(t, err, notify.ENOTFOUND, "unknown_authorization")
		_, err = e.svc.QuerySubscriptions(ctx, outbound.SubscriptionQuery{AuthAppID: merchant, UserID: userID, TemplateIDs: []string{"a"}})
		wantCode(t, err, notify.ENOTFOUND, "unknown_authorization")
	})
	t.Run("OK", func(t *testing.T) {
		token := e.authorize(t)
		if _, _, err := e.svc.SendTemplateMessage(ctx, onBehalf(), ""); err != nil {
			t.Fatal(err)
		}
		calls := e.sim.Calls(send)
		if got := calls[len(calls)-1].Params.Get("app_auth_token"); got != token {
			t.Fatalf("app_auth_token %q; want the merchant's", got)
		}
		if sent := e.sim.Sent(); sent[len(sent)-1].AuthAppID != merchant {
			t.Fatalf("%+v", sent)
		}
		var req string
		if err := e.db.Pool.QueryRow(ctx, `SELECT request::text FROM template_messages ORDER BY id DESC LIMIT 1`).Scan(&req); err != nil {
			t.Fatal(err)
		}
		if strings.Contains(req, token) {
			t.Fatal("the token is in the recorded request")
		}
	})
	t.Run("ErrCancelled", func(t *testing.T) {
		calls := len(e.sim.Calls(send))
		e.cancel(t, time.Now().Add(time.Second).UnixMilli())
		_, _, err := e.svc.SendTemplateMessage(ctx, onBehalf(), "")
		wantCode(t, err, notify.ECONFLICT, "authorization_cancelled")
		_, err = e.svc.QuerySubscriptions(ctx, outbound.SubscriptionQuery{AuthAppID: merchant, UserID: userID, TemplateIDs: []string{"a"}})
		wantCode(t, err, notify.ECONFLICT, "authorization_cancelled")
		if len(e.sim.Calls(send)) != calls {
			t.Fatal("a cancelled token was used")
		}
	})
	t.Run("ErrRevokedAtAlipay", func(t *testing.T) {
		// Alipay refuses a token it no longer honours (20001).
		e2 := newEnv(t, options{})
		e2.authorize(t)
		e2.sim.Revoke(keyAppID, merchant)
		_, _, err := e2.svc.SendTemplateMessage(ctx, onBehalf(), "")
		var be *outbound.BusinessError
		if !errors.As(err, &be) || be.Code != "20001" {
			t.Fatalf("%v", err)
		}
	})
}
