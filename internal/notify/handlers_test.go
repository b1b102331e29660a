package notify_test

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"

	"github.com/alipay-notify-gateway/gateway/internal/notify"
	"github.com/alipay-notify-gateway/gateway/internal/testkit"
)

// plain returns c without its Origin and, for a grant, without its sealed
// tokens, once they open to tokens for their authorization.
func plain(t *testing.T, c notify.Change, tokens [2]string) notify.Change {
	t.Helper()
	switch c := c.(type) {
	case notify.AuditChange:
		c.Origin = notify.Origin{}
		return c
	case notify.OrderChange:
		c.Origin = notify.Origin{}
		return c
	case notify.AuthCancel:
		c.Origin = notify.Origin{}
		return c
	case notify.AuthGrant:
		owner := notify.TokenOwner(c.AppID, c.AuthAppID)
		for i, sealed := range [][]byte{c.SealedAuthToken, c.SealedRefreshToken} {
			if got, err := testkit.Sealer(t).Open(sealed, owner); err != nil || got != tokens[i] {
				t.Errorf("sealed token %d opens to %q (%v), want %q", i, got, err, tokens[i])
			}
		}
		c.Origin, c.SealedAuthToken, c.SealedRefreshToken = notify.Origin{}, nil, nil
		return c
	}
	t.Fatalf("a change of type %T", c)
	return nil
}

// TestRegistry_Decide_Handlers is the handlers' table: what each kind of
// notification decides (its change, or the status it is kept with),
// without a database. internal/postgres's tests apply such changes.
func TestRegistry_Decide_Handlers(t *testing.T) {
	t.Parallel()
	reg := testkit.Registry(t)
	const rejected = `{"mini_app_id":"m1","mini_app_version":"1.0.0","bundle_id":"b","audit_reason":"bad","base_audit":"REJECT","promote_audit":"REJECT",` +
		`"base_audit_reason":{"audit_images":["a.png"],"memos":[{"memo":"x","memo_image_list":["m.png"]}]}}`
	grantBiz := `{"detail":{"app_id":"` + testkit.AppID + `","auth_app_id":"merchant1","auth_time":1000,"app_auth_token":"tok-1000",` +
		`"app_refresh_token":"ref","expires_in":"3600","re_expires_in":7200,"user_id":"2088u"}}`
	// grant is an authorization notification with biz and these parameters.
	grant := func(biz string, params ...string) *notify.Notification {
		n := testkit.Note(notify.MethodAuthGranted, biz, 1)
		for i := 0; i+1 < len(params); i += 2 {
			n.Params[params[i]] = params[i+1]
		}
		return n
	}
	for _, tc := range []struct {
		name string
		n    *notify.Notification
		// want is the change without its Origin and sealed tokens; at is
		// its Origin's time, tokens what its sealed tokens open to.
		want   notify.Change
		at     int64
		tokens [2]string
		// Without a change: the status it is kept with, and a part of its
		// error.
		status notify.Status
		err    string
	}{
		{name: "AuditRejected", n: testkit.Note(notify.MethodAuditRejected, rejected, 100), at: 100, want: notify.AuditChange{
			Method: notify.MethodAuditRejected, MiniAppID: "m1", Version: "1.0.0", AuditStatus: notify.AuditRejected, BundleID: "b",
			AuditReason: "bad", BaseAudit: "REJECT", PromoteAudit: "REJECT",
			BaseAuditReason:    json.RawMessage(`{"audit_images":["a.png"],"memos":[{"memo":"x","memo_image_list":["m.png"]}]}`),
			PromoteAuditReason: json.RawMessage("null"),
		}},
		{name: "AuditPassed", n: testkit.Note(notify.MethodAuditPassed, `{"mini_app_id":"m1","mini_app_version":"1.0.0"}`, 200), at: 200, want: notify.AuditChange{
			Method: notify.MethodAuditPassed, MiniAppID: "m1", Version: "1.0.0", AuditStatus: notify.AuditPassed,
			BaseAuditReason: json.RawMessage("null"), PromoteAuditReason: json.RawMessage("null"),
		}},
		{name: "BaseAuditPassedNoVersion", n: testkit.Note(notify.MethodBaseAuditPassed, `{"mini_app_id":"m1"}`, 300), at: 300, want: notify.AuditChange{
			Method: notify.MethodBaseAuditPassed, MiniAppID: "m1", AuditStatus: notify.BaseAuditPassed,
			BaseAuditReason: json.RawMessage("null"), PromoteAuditReason: json.RawMessage("null"),
		}},
		{name: "AuditNumberAsID", n: testkit.Note(notify.MethodAuditPassed, `{"mini_app_id":2014072300007148}`, 1), at: 1, want: notify.AuditChange{
			Method: notify.MethodAuditPassed, MiniAppID: "2014072300007148", AuditStatus: notify.AuditPassed,
			BaseAuditReason: json.RawMessage("null"), PromoteAuditReason: json.RawMessage("null"),
		}},
		{name: "MerchantConfirmed", n: testkit.Note(notify.MethodMerchantConfirmed, `{"order_no":"o1","out_order_no":"out1","min_app_id":"2021","status":"PROCESS","pid":"2088"}`, 100),
			at: 100, want: notify.OrderChange{Method: notify.MethodMerchantConfirmed, Kind: notify.OrderKindMerchantConfirmed, OrderNo: "o1", OutOrderNo: "out1",
				MiniAppID: "2021", Status: "PROCESS", PID: "2088"}},
		{name: "MerchantConfirmedEmptyIDs", n: testkit.Note(notify.MethodMerchantConfirmed, `{"order_no":"o1","min_app_id":"","status":"AGREED"}`, 200),
			at: 200, want: notify.OrderChange{Method: notify.MethodMerchantConfirmed, Kind: notify.OrderKindMerchantConfirmed, OrderNo: "o1", Status: "AGREED"}},
		{name: "FastRegisterChanged", n: testkit.Note(notify.MethodFastRegisterChanged,
			`{"order_no":"f1","out_order_no":"x","merchant_app_id":"3","status":"SOMETHING_NEW","app_name":"张三","merchant_id":"m"}`, 1),
			at: 1, want: notify.OrderChange{Method: notify.MethodFastRegisterChanged, Kind: notify.OrderKindFastRegister, OrderNo: "f1", OutOrderNo: "x",
				MiniAppID: "3", Status: "SOMETHING_NEW", MerchantID: "m", AppName: "张三"}},
		{name: "OrderMiniAppIDLast", n: testkit.Note(notify.MethodFastRegisterChanged, `{"order_no":"f2","min_app_id":"","merchant_app_id":"","mini_app_id":"4"}`, 1),
			at: 1, want: notify.OrderChange{Method: notify.MethodFastRegisterChanged, Kind: notify.OrderKindFastRegister, OrderNo: "f2", MiniAppID: "4"}},
		{name: "Granted", n: grant(grantBiz, "status", "execute_auth"), at: 1000, tokens: [2]string{"tok-1000", "ref"}, want: notify.AuthGrant{
			AuthAppID: "merchant1", UserID: "2088u", AuthTime: 1000, ExpiresIn: 3600, ReExpiresIn: 7200,
		}},
		{name: "GrantedAuthAppIDOfParams", n: grant(`{"detail":{"auth_time":"1000","app_auth_token":"t","expires_in":-1}}`, "auth_app_id", "merchant2"),
			at: 1000, tokens: [2]string{"t", ""}, want: notify.AuthGrant{AuthAppID: "merchant2", AuthTime: 1000}},
		{name: "GrantedNoAuthTime", n: grant(`{"detail":{"auth_app_id":"merchant3","app_auth_token":"t","app_refresh_token":"r"}}`),
			at: 1, tokens: [2]string{"t", "r"}, want: notify.AuthGrant{AuthAppID: "merchant3"}},
		{name: "Cancelled", n: testkit.Note(notify.MethodAuthCancelled, `{"app_auth_token":"tok","app_id":"x","auth_app_id":"merchant1","user_id":"2088u"}`, 2000),
			at: 2000, want: notify.AuthCancel{AuthAppID: "merchant1", UserID: "2088u"}},
		{name: "Unhandled", n: testkit.Note("alipay.open.future.thing", `{"a":1}`, 1), status: notify.StatusUnhandled},
		{name: "ErrAuditNotJSON", n: testkit.Note(notify.MethodAuditPassed, "not json", 1), status: notify.StatusFailed, err: "not a JSON object"},
		{name: "ErrAuditArray", n: testkit.Note(notify.MethodAuditPassed, `[1]`, 1), status: notify.StatusFailed, err: "not a JSON object"},
		{name: "ErrAuditBadJSON", n: testkit.Note(notify.MethodAuditPassed, `{"mini_app_id":`, 1), status: notify.StatusFailed, err: "not valid JSON"},
		{name: "ErrAuditNoMiniAppID", n: testkit.Note(notify.MethodAuditPassed, `{"mini_app_version":"1"}`, 1), status: notify.StatusFailed, err: "mini_app_id"},
		{name: "ErrOrderNoOrderNo", n: testkit.Note(notify.MethodFastRegisterChanged, `{"status":"X"}`, 1), status: notify.StatusFailed, err: "order_no"},
		{name: "ErrCancelNoAuthAppID", n: testkit.Note(notify.MethodAuthCancelled, `{"user_id":"1"}`, 1), status: notify.StatusFailed, err: "auth_app_id"},
		{name: "ErrGrantNoToken", n: grant(`{"detail":{"auth_app_id":"m3","auth_time":1}}`), status: notify.StatusFailed, err: "no app_auth_token"},
		{name: "ErrGrantNoAuthAppID", n: grant(`{"detail":{"app_auth_token":"t"}}`), status: notify.StatusFailed, err: "auth_app_id"},
		{name: "ErrGrantWithError", n: grant(`{"error":{"code":"x"},"detail":{"auth_app_id":"1"}}`), status: notify.StatusFailed, err: "carries an error"},
		{name: "ErrGrantStatus", n: grant(grantBiz, "status", "cancel_auth"), status: notify.StatusFailed, err: `status "cancel_auth"`},
		{name: "ErrGrantNotJSON", n: grant(`nope`), status: notify.StatusFailed, err: "not a JSON object"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d, err := reg.Decide(tc.n)
			if err != nil || d.Notification != tc.n {
				t.Fatalf("%+v %v", d, err)
			}
			if tc.want == nil {
				if d.Change != nil || d.Status != tc.status || !strings.Contains(d.Error, tc.err) || (tc.err == "") != (d.Error == "") {
					t.Fatalf("change %+v, status %s, error %q; want none, %s, %q", d.Change, d.Status, d.Error, tc.status, tc.err)
				}
				return
			}
			if d.Change == nil || d.Error != "" {
				t.Fatalf("no change: %+v", d)
			}
			if e := d.Change.Ordering(); e != (notify.Origin{AppID: tc.n.AppID, NotifyID: tc.n.NotifyID, At: tc.at}) {
				t.Errorf("event %+v, want at %d", e, tc.at)
			}
			got := plain(t, d.Change, tc.tokens)
			if !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("change\n%#v\nwant\n%#v", got, tc.want)
			}
		})
	}
}
