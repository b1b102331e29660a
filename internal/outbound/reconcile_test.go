package outbound_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/alipay-notify-gateway/gateway/internal/notify"
	"github.com/alipay-notify-gateway/gateway/internal/openapisim"
	"github.com/alipay-notify-gateway/gateway/internal/outbound"
	"github.com/alipay-notify-gateway/gateway/internal/testkit"
)

var statuses = []string{"AUDIT_REJECT", "WAIT_RELEASE", "RELEASE"}

func TestService_MiniVersions(t *testing.T) {
	t.Parallel()
	e := newEnv(t, options{timeout: 500 * time.Millisecond})
	ctx := context.Background()
	token := e.authorize(t)
	e.sim.SetVersion(testkit.MerchantAppID, openapisim.Version{Version: "1.0.0", Status: "RELEASE"})
	e.sim.SetVersion(testkit.MerchantAppID, openapisim.Version{Version: "1.1.0", Status: "AUDIT_REJECT", RejectReason: "类目不符"})
	e.sim.SetVersion(e.app.ID, openapisim.Version{Version: "2.0.0", Status: "WAIT_RELEASE"})

	t.Run("OK", func(t *testing.T) {
		vs, err := e.svc.MiniVersions(ctx, e.app.ID, testkit.MerchantAppID, statuses)
		if err != nil || len(vs) != 2 || vs[0].Version != "1.1.0" || vs[0].Status != "AUDIT_REJECT" || vs[1].Status != "RELEASE" {
			t.Fatalf("%+v %v", vs, err)
		}
		calls := e.sim.Calls(openapisim.MethodMiniVersionList)
		if c := calls[len(calls)-1]; c.Params.Get("app_auth_token") != token || c.Biz["version_status"] != "AUDIT_REJECT,WAIT_RELEASE,RELEASE" {
			t.Fatalf("%v %v", c.Params, c.Biz)
		}
		d, err := e.svc.MiniVersionDetail(ctx, e.app.ID, testkit.MerchantAppID, "1.1.0", "")
		if err != nil || d.Status != "AUDIT_REJECT" || d.RejectReason != "类目不符" {
			t.Fatalf("%+v %v", d, err)
		}
	})
	t.Run("OKOwnMiniApp", func(t *testing.T) {
		vs, err := e.svc.MiniVersions(ctx, e.app.ID, "", statuses)
		if err != nil || len(vs) != 1 || vs[0].Version != "2.0.0" {
			t.Fatalf("%+v %v", vs, err)
		}
		calls := e.sim.Calls(openapisim.MethodMiniVersionList)
		if calls[len(calls)-1].Params.Get("app_auth_token") != "" {
			t.Fatal("the ISV's own mini-app was queried with a merchant's token")
		}
	})
	t.Run("ErrBadSign", func(t *testing.T) {
		e.sim.Fail(openapisim.MethodMiniVersionList, openapisim.Fault{BadSign: true})
		_, err := e.svc.MiniVersions(ctx, e.app.ID, testkit.MerchantAppID, statuses)
		wantCode(t, err, outbound.EUPSTREAM)
	})
	t.Run("ErrTimeout", func(t *testing.T) {
		e.sim.Fail(openapisim.MethodMiniVersionDetail, openapisim.Fault{Hang: true})
		_, err := e.svc.MiniVersionDetail(ctx, e.app.ID, testkit.MerchantAppID, "1.0.0", "")
		wantCode(t, err, outbound.EUPSTREAM, "alipay_timeout")
	})
	t.Run("ErrRateLimited", func(t *testing.T) {
		e.sim.Fail(openapisim.MethodMiniVersionList, openapisim.Fault{Code: "40005", Msg: "Call Limited"})
		_, err := e.svc.MiniVersions(ctx, e.app.ID, testkit.MerchantAppID, statuses)
		var be *outbound.BusinessError
		if !errors.As(err, &be) || be.Code != "40005" {
			t.Fatalf("%v", err)
		}
	})
	t.Run("ErrExpiredAtAlipay", func(t *testing.T) {
		e.sim.Expire(e.app.ID, testkit.MerchantAppID)
		_, err := e.svc.MiniVersions(ctx, e.app.ID, testkit.MerchantAppID, statuses)
		var be *outbound.BusinessError
		if !errors.As(err, &be) || be.Code != "20001" || be.SubCode != "aop.app-auth-token-time-out" {
			t.Fatalf("%v", err)
		}
	})
}

func TestService_QueryToken(t *testing.T) {
	t.Parallel()
	e := newEnv(t, options{})
	ctx := context.Background()
	token := e.authorize(t)

	t.Run("OK", func(t *testing.T) {
		info, err := e.svc.QueryToken(ctx, e.app.ID, testkit.MerchantAppID)
		if err != nil || info.Status != outbound.TokenValid || info.AuthAppID != testkit.MerchantAppID || info.ExpiresIn.Int64() <= 0 {
			t.Fatalf("%+v %v", info, err)
		}
		calls := e.sim.Calls(openapisim.MethodAuthTokenQuery)
		if c := calls[len(calls)-1]; c.Params.Get("app_auth_token") != "" || c.Biz["app_auth_token"] != token {
			t.Fatalf("the token goes in biz_content only: %v %v", c.Params, c.Biz)
		}
	})
	t.Run("OKInvalid", func(t *testing.T) {
		e.sim.Invalidate(e.app.ID, testkit.MerchantAppID)
		info, err := e.svc.QueryToken(ctx, e.app.ID, testkit.MerchantAppID)
		if err != nil || info.Status != outbound.TokenInvalid {
			t.Fatalf("%+v %v", info, err)
		}
	})
	t.Run("ErrCancelled", func(t *testing.T) {
		e.cancel(t, time.Now().UnixMilli())
		n := e.sim.Requests()
		_, err := e.svc.QueryToken(ctx, e.app.ID, testkit.MerchantAppID)
		wantCode(t, err, notify.ECONFLICT)
		if e.sim.Requests() != n {
			t.Fatal("a cancelled merchant's token was used")
		}
	})
}
