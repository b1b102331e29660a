package openapisim_test

import (
	"encoding/json"
	"net/http"
	"net/url"
	"testing"
	"time"

	"github.com/alipay-notify-gateway/gateway/internal/openapisim"
	"github.com/alipay-notify-gateway/gateway/internal/testkit"
)

const (
	listKey   = "alipay_open_mini_version_list_query_response"
	detailKey = "alipay_open_mini_version_detail_query_response"
	queryKey  = "alipay_open_auth_token_app_query_response"
	merchant  = "2021000000000200"
)

// issueToken has merchant authorize testkit.AppID and returns its live
// app_auth_token.
func issueToken(t *testing.T, c *http.Client, sim *openapisim.Sim) string {
	t.Helper()
	code := sim.IssueCode(testkit.AppID, merchant, "2088000000000200")
	post(t, c, sim, request(t, openapisim.MethodAuthTokenApp, `{"grant_type":"authorization_code","code":"`+code+`"}`, testkit.AppKey(), nil))
	token, _ := sim.Tokens(testkit.AppID, merchant)
	if token == "" {
		t.Fatal("no token issued")
	}
	return token
}

func TestSim_Reconcile(t *testing.T) {
	t.Parallel()
	sim := openapisim.Start(openapisim.Config{
		Apps:    []openapisim.App{{ID: testkit.AppID, Pub: &testkit.AppKey().PublicKey}},
		SignKey: testkit.AlipayKey(),
	})
	defer sim.Close()
	c := &http.Client{Timeout: 2 * time.Second}
	token := issueToken(t, c, sim)
	withToken := url.Values{"app_auth_token": {token}}
	sim.SetVersion(merchant, openapisim.Version{Version: "0.9.0", Status: "RELEASE"})
	sim.SetVersion(merchant, openapisim.Version{Version: "0.10.0", Status: "AUDIT_REJECT", RejectReason: "名称不符",
		BaseAudit: "REJECT", BaseAuditRecord: json.RawMessage(`{"audit_images":["https://img"],"memos":[{"memo":"名称不符"}]}`)})
	sim.SetVersion(merchant, openapisim.Version{Version: "0.11.0", Status: "NEW_STATUS"})
	sim.SetVersion(testkit.AppID, openapisim.Version{Version: "1.0.0", Status: "WAIT_RELEASE"})

	t.Run("List", func(t *testing.T) {
		_, raw := post(t, c, sim, request(t, openapisim.MethodMiniVersionList, `{"version_status":"RELEASE,AUDIT_REJECT,WAIT_RELEASE"}`, testkit.AppKey(), withToken))
		var ans struct {
			Code  string `json:"code"`
			Infos []struct {
				AppVersion    string `json:"app_version"`
				VersionStatus string `json:"version_status"`
				BundleID      string `json:"bundle_id"`
			} `json:"app_version_infos"`
		}
		if err := json.Unmarshal(raw[listKey], &ans); err != nil || ans.Code != "10000" || !signedBy(raw, listKey, &testkit.AlipayKey().PublicKey) {
			t.Fatalf("%s %v", raw[listKey], err)
		}
		// Newest version number first; only the statuses asked for.
		if len(ans.Infos) != 2 || ans.Infos[0].AppVersion != "0.10.0" || ans.Infos[1].VersionStatus != "RELEASE" ||
			ans.Infos[0].BundleID != openapisim.DefaultBundleID {
			t.Fatalf("%+v", ans.Infos)
		}
	})
	t.Run("ListNothingWithoutStatuses", func(t *testing.T) {
		_, raw := post(t, c, sim, request(t, openapisim.MethodMiniVersionList, `{}`, testkit.AppKey(), withToken))
		if string(raw[listKey]) != `{"code":"10000","msg":"Success","app_version_infos":[],"app_versions":[]}` {
			t.Fatalf("%s", raw[listKey])
		}
	})
	t.Run("ListOwnMiniApp", func(t *testing.T) {
		_, raw := post(t, c, sim, request(t, openapisim.MethodMiniVersionList, `{"version_status":"WAIT_RELEASE"}`, testkit.AppKey(), nil))
		if field(t, raw[listKey], "code") != "10000" || len(raw[listKey]) < 50 {
			t.Fatalf("%s", raw[listKey])
		}
	})
	t.Run("Detail", func(t *testing.T) {
		_, raw := post(t, c, sim, request(t, openapisim.MethodMiniVersionDetail, `{"app_version":"0.10.0"}`, testkit.AppKey(), withToken))
		if field(t, raw[detailKey], "status") != "AUDIT_REJECT" || field(t, raw[detailKey], "reject_reason") != "名称不符" ||
			field(t, raw[detailKey], "base_audit") != "REJECT" {
			t.Fatalf("%s", raw[detailKey])
		}
		_, raw = post(t, c, sim, request(t, openapisim.MethodMiniVersionDetail, `{"app_version":"9.9.9"}`, testkit.AppKey(), withToken))
		if field(t, raw[detailKey], "code") != "40004" {
			t.Fatalf("%s", raw[detailKey])
		}
	})
	t.Run("TokenQuery", func(t *testing.T) {
		_, raw := post(t, c, sim, request(t, openapisim.MethodAuthTokenQuery, `{"app_auth_token":"`+token+`"}`, testkit.AppKey(), nil))
		if field(t, raw[queryKey], "status") != "valid" || field(t, raw[queryKey], "auth_app_id") != merchant {
			t.Fatalf("%s", raw[queryKey])
		}
		_, raw = post(t, c, sim, request(t, openapisim.MethodAuthTokenQuery, `{"app_auth_token":"nope"}`, testkit.AppKey(), nil))
		if field(t, raw[queryKey], "sub_code") != "aop.invalid-app-auth-token" {
			t.Fatalf("%s", raw[queryKey])
		}
	})
	t.Run("ErrExpired", func(t *testing.T) {
		sim.Expire(testkit.AppID, merchant)
		_, raw := post(t, c, sim, request(t, openapisim.MethodMiniVersionList, `{"version_status":"RELEASE"}`, testkit.AppKey(), withToken))
		if field(t, raw[listKey], "code") != "20001" || field(t, raw[listKey], "sub_code") != "aop.app-auth-token-time-out" {
			t.Fatalf("%s", raw[listKey])
		}
		_, raw = post(t, c, sim, request(t, openapisim.MethodAuthTokenQuery, `{"app_auth_token":"`+token+`"}`, testkit.AppKey(), nil))
		if field(t, raw[queryKey], "sub_code") != "aop.app-auth-token-time-out" {
			t.Fatalf("%s", raw[queryKey])
		}
	})
	t.Run("ErrInvalid", func(t *testing.T) {
		token := issueToken(t, c, sim) // a new grant: a fresh token
		sim.Invalidate(testkit.AppID, merchant)
		_, raw := post(t, c, sim, request(t, openapisim.MethodMiniVersionDetail, `{"app_version":"0.9.0"}`, testkit.AppKey(), url.Values{"app_auth_token": {token}}))
		if field(t, raw[detailKey], "sub_code") != "aop.invalid-app-auth-token" {
			t.Fatalf("%s", raw[detailKey])
		}
		_, raw = post(t, c, sim, request(t, openapisim.MethodAuthTokenQuery, `{"app_auth_token":"`+token+`"}`, testkit.AppKey(), nil))
		if field(t, raw[queryKey], "code") != "10000" || field(t, raw[queryKey], "status") != "invalid" ||
			!signedBy(raw, queryKey, &testkit.AlipayKey().PublicKey) {
			t.Fatalf("%s", raw[queryKey])
		}
	})
	t.Run("RateLimited", func(t *testing.T) {
		sim.Fail(openapisim.MethodMiniVersionList, openapisim.Fault{Code: "40005", Msg: "Call Limited"})
		_, raw := post(t, c, sim, request(t, openapisim.MethodMiniVersionList, `{"version_status":"RELEASE"}`, testkit.AppKey(), nil))
		if field(t, raw[listKey], "code") != "40005" {
			t.Fatalf("%s", raw[listKey])
		}
	})
}
