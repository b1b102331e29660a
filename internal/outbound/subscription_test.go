package outbound_test

import (
	"context"
	"errors"
	"testing"

	"github.com/alipay-notify-gateway/gateway/internal/notify"
	"github.com/alipay-notify-gateway/gateway/internal/openapisim"
	"github.com/alipay-notify-gateway/gateway/internal/outbound"
	"github.com/alipay-notify-gateway/gateway/internal/testkit"
)

const query = openapisim.MethodSubscribeQuery

func TestService_QuerySubscriptions(t *testing.T) {
	t.Parallel()
	e := newEnv(t, options{})
	ctx := context.Background()
	e.sim.Subscribe(userID, "t1", openapisim.Subscription{State: "1", Type: "longterm"})
	e.sim.Subscribe(userID, "t2", openapisim.Subscription{State: "0", Type: "onetime"})

	t.Run("OK", func(t *testing.T) {
		got, err := e.svc.QuerySubscriptions(ctx, outbound.SubscriptionQuery{UserID: userID, TemplateIDs: []string{"t1", "t2", "t3"}})
		if err != nil {
			t.Fatal(err)
		}
		if got.AppID != testkit.AppID || got.ShowComponent == nil || !*got.ShowComponent || len(got.Relations) != 2 {
			t.Fatalf("%+v", got)
		}
		r1, r2 := got.Relations[0], got.Relations[1]
		if r1.TemplateID != "t1" || !r1.Subscribed || r1.SubscribeType != "longterm" || r2.Subscribed || r2.SubscribeState != "0" {
			t.Fatalf("%+v", got.Relations)
		}
		calls := e.sim.Calls(query)
		if biz := calls[len(calls)-1].Biz; biz["user_id"] != userID || len(biz["template_id_list"].([]any)) != 3 {
			t.Fatalf("biz %v", biz)
		}
	})
	t.Run("OKOpenID", func(t *testing.T) {
		got, err := e.svc.QuerySubscriptions(ctx, outbound.SubscriptionQuery{UserID: "074a1CcTG1LelxKe4xQC0zg", TemplateIDs: []string{"t1"}})
		if err != nil || len(got.Relations) != 0 {
			t.Fatalf("%+v %v", got, err)
		}
		calls := e.sim.Calls(query)
		if biz := calls[len(calls)-1].Biz; biz["open_id"] != "074a1CcTG1LelxKe4xQC0zg" || biz["user_id"] != nil {
			t.Fatalf("biz %v", biz)
		}
	})
	t.Run("ErrInvalid", func(t *testing.T) {
		calls := len(e.sim.Calls(query))
		for name, q := range map[string]outbound.SubscriptionQuery{
			"four ids": {UserID: userID, TemplateIDs: []string{"a", "b", "c", "d"}},
			"no ids":   {UserID: userID},
			"empty id": {UserID: userID, TemplateIDs: []string{"a", ""}},
			"same id":  {UserID: userID, TemplateIDs: []string{"a", "a"}},
			"no user":  {TemplateIDs: []string{"a"}},
		} {
			if _, err := e.svc.QuerySubscriptions(ctx, q); notify.ErrorCode(err) != notify.EINVALID {
				t.Errorf("%s: %v", name, err)
			}
		}
		if len(e.sim.Calls(query)) != calls {
			t.Fatal("an invalid query reached Alipay")
		}
	})
	t.Run("ErrBusiness", func(t *testing.T) {
		e.sim.Fail(query, openapisim.Fault{Code: "40004", Msg: "Business Failed", SubCode: "TEMPLATE_NOT_EXIST", SubMsg: "模板不存在"})
		_, err := e.svc.QuerySubscriptions(ctx, outbound.SubscriptionQuery{UserID: userID, TemplateIDs: []string{"t1"}})
		var be *outbound.BusinessError
		if !errors.As(err, &be) || be.SubCode != "TEMPLATE_NOT_EXIST" {
			t.Fatalf("%v", err)
		}
	})
	t.Run("ErrUpstream", func(t *testing.T) {
		e.sim.Fail(query, openapisim.Fault{BadSign: true})
		_, err := e.svc.QuerySubscriptions(ctx, outbound.SubscriptionQuery{UserID: userID, TemplateIDs: []string{"t1"}})
		wantCode(t, err, outbound.EUPSTREAM, "alipay_bad_answer")
	})
}
