// Package samples holds the notifications of seed 001 (the six messages an
// ISV running mini-apps for merchants receives) and the older-style
// authorization-granted notification, as unsigned forms. Tests, alipayctl
// send --sample and make demo sign them with a test key.
package samples

import "sort"

// Sample is one notification, unsigned.
type Sample struct {
	Name   string            // short name for --sample
	Method string            // msg_method, or notify_type for the older style
	Form   map[string]string // every parameter but sign
}

// common are the parameters the seed's six samples share.
func common(method, biz string) map[string]string {
	return map[string]string{
		"charset":       "UTF-8",
		"biz_content":   biz,
		"msg_method":    method,
		"utc_timestamp": "1516797622752",
		"version":       "1.1",
		"sign_type":     "RSA2",
		"notify_id":     "d275fec564e62af6bedbcee73f3f05fi5x",
		"app_id":        "2013121700999429",
	}
}

const reasons = `{"audit_images":["xxx.png"],"memos":[{"memo":"JS错误检测:发现JS错误,请及时优化","memo_image_list":["xxx.png"]}]}`

var all = []Sample{
	{Name: "appauth-cancelled", Method: "alipay.open.auth.appauth.cancelled", Form: common("alipay.open.auth.appauth.cancelled",
		`{"app_auth_token":"211203BB6e8df9252c9e179d9f4c94d57d510X00","app_id":"2014072300007148","auth_app_id":"2013072300101234","user_id":"2088100000034011"}`)},
	{Name: "merchant-confirmed", Method: "alipay.open.mini.merchant.confirmed", Form: common("alipay.open.mini.merchant.confirmed",
		`{"order_no":"2394834823942343","out_order_no":"23948392483253534535","min_app_id":"20218324729872","status":"PROCESS","pid":"2088002306330746"}`)},
	{Name: "fastregister-changed", Method: "alipay.open.mini.merchant.fastregister.changed", Form: common("alipay.open.mini.merchant.fastregister.changed",
		`{"order_no":"2394834823942344","out_order_no":"23948392483253534536","merchant_app_id":"20218324729872","status":"CREATE_MINI_APP_SUCCESS","app_name":"张三的试用小程序","merchant_id":"208121234234324234234324"}`)},
	{Name: "audit-passed", Method: "alipay.open.mini.version.audit.passed", Form: common("alipay.open.mini.version.audit.passed",
		`{"mini_app_id":"2014072300007148"}`)},
	{Name: "audit-rejected", Method: "alipay.open.mini.version.audit.rejected", Form: common("alipay.open.mini.version.audit.rejected",
		`{"mini_app_id":"2014072300007148","bundle_id":"com.alipay.alipaywallet","mini_app_version":"0.0.1","audit_reason":"JS错误检测:发现JS错误,请及时优化","base_audit":"REJECT","promote_audit":"REJECT","base_audit_reason":`+reasons+`,"promote_audit_reason":`+reasons+`}`)},
	{Name: "baseaudit-passed", Method: "alipay.open.mini.version.baseaudit.passed", Form: common("alipay.open.mini.version.baseaudit.passed",
		`{"mini_app_id":"2014072300007148","bundle_id":"com.alipay.alipaywallet","mini_app_version":"0.0.2","audit_reason":"JS错误检测:发现JS错误,请及时优化","base_audit":"PASS","promote_audit":"REJECT","base_audit_reason":`+reasons+`,"promote_audit_reason":`+reasons+`}`)},
	{Name: "auth-granted", Method: "open_app_auth_notify", Form: map[string]string{
		"notify_id":   "2023a1b2c3d4e5f60718293a4b5c6d7e8f",
		"notify_type": "open_app_auth_notify",
		"notify_time": "2018-01-24 20:40:23",
		"app_id":      "2013121700999429",
		"auth_app_id": "2013072300101234",
		"charset":     "utf-8",
		"version":     "1.0",
		"sign_type":   "RSA2",
		"status":      "execute_auth",
		"biz_content": `{"notify_context":{"trigger":"auth_app","trigger_context":"{}"},"detail":{"app_id":"2013121700999429","auth_app_id":"2013072300101234","auth_time":1516797623000,"app_auth_code":"P61b2a2a0a5c44cc8a4a9e2b2c0c3b3X01","app_auth_token":"202301BB0c4f2a9c1ff34b1f8f0d7ea6f4d2fX01","expires_in":31536000,"app_refresh_token":"202301BBa6b9e0c9a1c84d4a9a3c4c5c6d7e8X01","re_expires_in":32140800,"user_id":"2088100000034011"}}`,
	}},
}

// All returns every sample, each with a fresh copy of its form.
func All() []Sample {
	out := make([]Sample, len(all))
	for i, s := range all {
		out[i] = s
		out[i].Form = copyForm(s.Form)
	}
	return out
}

// Get returns the sample named name.
func Get(name string) (Sample, bool) {
	for _, s := range All() {
		if s.Name == name {
			return s, true
		}
	}
	return Sample{}, false
}

// Names returns the samples' names, sorted.
func Names() []string {
	var names []string
	for _, s := range all {
		names = append(names, s.Name)
	}
	sort.Strings(names)
	return names
}

func copyForm(f map[string]string) map[string]string {
	out := make(map[string]string, len(f))
	for k, v := range f {
		out[k] = v
	}
	return out
}
