package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/alipay-notify-gateway/gateway/internal/alipay"
	"github.com/alipay-notify-gateway/gateway/internal/config"
	"github.com/alipay-notify-gateway/gateway/internal/devpki"
	"github.com/alipay-notify-gateway/gateway/internal/loadtest"
	"github.com/alipay-notify-gateway/gateway/internal/openapisim"
	"github.com/alipay-notify-gateway/gateway/internal/outbound"
)

const appID = "2021000000000001"

// devKeys writes the key pairs the dev scripts make (bench-lib.sh's
// `loadgen -gen-key`, for the "Alipay" pair and the app's) into a temp dir
// once.
var devKeys = sync.OnceValues(func() (string, error) {
	dir, err := os.MkdirTemp("", "openapisim-keys-")
	if err != nil {
		return "", err
	}
	for _, sub := range []string{"alipay", "app"} {
		if err := loadtest.GenKey(filepath.Join(dir, sub)); err != nil {
			return "", err
		}
	}
	return dir, nil
})

func TestMain(m *testing.M) {
	code := m.Run()
	if dir, err := devKeys(); err == nil {
		_ = os.RemoveAll(dir)
	}
	os.Exit(code)
}

func keysDir(t *testing.T) string {
	t.Helper()
	dir, err := devKeys()
	if err != nil {
		t.Fatal(err)
	}
	return dir
}

// start runs the simulator with args on a free port until the test ends,
// and returns its base URL.
func start(t *testing.T, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan string, 1)
	done := make(chan error, 1)
	var logs bytes.Buffer
	var mu sync.Mutex
	go func() {
		done <- run(ctx, append([]string{"-addr", "127.0.0.1:0"}, args...), func(string) string { return "" }, lockedWriter{&mu, &logs}, ready)
	}()
	select {
	case addr := <-ready:
		t.Cleanup(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("run: %v", err)
			}
		})
		return "http://" + addr
	case err := <-done:
		cancel()
		mu.Lock()
		defer mu.Unlock()
		t.Fatalf("run: %v\n%s", err, logs.String())
	}
	return ""
}

type lockedWriter struct {
	mu *sync.Mutex
	w  io.Writer
}

func (l lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

// gateway returns the gateway's own OpenAPI client, configured from env as
// the gateway is (internal/config), pointed at base.
func gateway(t *testing.T, base string, env map[string]string) *outbound.Service {
	t.Helper()
	key := base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{7}, 32))
	full := map[string]string{"DATABASE_URL": "postgres://unused", "TOKEN_ENCRYPTION_KEY": key, "ALIPAY_APP_ID": appID,
		"ALIPAY_GATEWAY_URL": base + "/gateway.do"}
	for k, v := range env {
		full[k] = v
	}
	cfg, err := config.Load(full, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	svc, err := outbound.New(outbound.Config{Apps: cfg.Apps, GatewayURL: cfg.GatewayURL, Store: noStore{}, Sealer: cfg.Sealer,
		Logger: zerolog.Nop(), Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	return svc
}

// noStore is a Store that is never used: the ISV's own subscription
// queries touch none.
type noStore struct{ outbound.Store }

// ctl calls the control API, decoding the answer into out when not nil,
// and returns the status.
func ctl(t *testing.T, method, u, body string, out any) int {
	t.Helper()
	req, err := http.NewRequest(method, u, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	if out != nil {
		if err := json.Unmarshal(data, out); err != nil {
			t.Fatalf("%s %s: %s: %v", method, u, data, err)
		}
	}
	return resp.StatusCode
}

type stats struct {
	openapisim.Stats
	SendTimes  []int64 `json:"send_times"`
	Duplicates *int    `json:"duplicates"`
}

func TestRun_PublicKeyMode(t *testing.T) {
	t.Parallel()
	dir := keysDir(t)
	base := start(t, "-app-id", appID, "-app-public-key", filepath.Join(dir, "app", loadtest.PublicKeyFile),
		"-alipay-private-key", filepath.Join(dir, "alipay", loadtest.PrivateKeyFile))
	gw := gateway(t, base, map[string]string{"ALIPAY_PUBLIC_KEY_FILE": filepath.Join(dir, "alipay", loadtest.PublicKeyFile),
		"ALIPAY_APP_PRIVATE_KEY_FILE": filepath.Join(dir, "app", loadtest.PrivateKeyFile)})
	ctx := context.Background()
	q := outbound.SubscriptionQuery{AppID: appID, UserID: "2088000000000001", TemplateIDs: []string{"tpl"}}

	t.Run("OK", func(t *testing.T) {
		var sub map[string]int
		if code := ctl(t, "POST", base+"/sim/subscribe", `{"user_ids":["2088000000000001"],"template_id":"tpl"}`, &sub); code != 200 || sub["subscribed"] != 1 {
			t.Fatalf("subscribe: %d %v", code, sub)
		}
		got, err := gw.QuerySubscriptions(ctx, q)
		if err != nil {
			t.Fatal(err)
		}
		if len(got.Relations) != 1 || !got.Relations[0].Subscribed {
			t.Fatalf("answer %+v", got)
		}
		send(t, base, filepath.Join(dir, "app", loadtest.PrivateKeyFile), "2088000000000001")
		send(t, base, filepath.Join(dir, "app", loadtest.PrivateKeyFile), "2088000000000001")
		var st stats
		ctl(t, "GET", base+"/sim/stats?times=1&dups=1", "", &st)
		if st.Sent != 2 || st.Calls != 3 || len(st.SendTimes) != 2 || st.Duplicates == nil || *st.Duplicates != 1 ||
			st.ByMethod[openapisim.MethodSubscribeQuery] != 1 {
			t.Fatalf("stats %+v", st)
		}
		if at := time.UnixMicro(st.SendTimes[1]); time.Since(at) > time.Minute || st.SendTimes[1] < st.SendTimes[0] {
			t.Fatalf("send times %v", st.SendTimes)
		}
	})
	t.Run("ErrRateLimited", func(t *testing.T) {
		var ans map[string]any
		if code := ctl(t, "POST", base+"/sim/rate", `{"per_second":0.001,"burst":1}`, &ans); code != 200 {
			t.Fatalf("rate: %d %v", code, ans)
		}
		defer ctl(t, "POST", base+"/sim/rate", `{"per_second":0}`, nil)
		before := statsOf(t, base)
		_, err1 := gw.QuerySubscriptions(ctx, q)
		_, err2 := gw.QuerySubscriptions(ctx, q)
		var be *outbound.BusinessError
		if err1 != nil || !errors.As(err2, &be) || be.Code != "40005" || be.SubCode != openapisim.SubCodeCallLimited {
			t.Fatalf("answers %v, %v", err1, err2)
		}
		if after := statsOf(t, base); after.RateLimited != before.RateLimited+1 || after.Calls != before.Calls+1 {
			t.Fatalf("stats %+v -> %+v", before, after)
		}
	})
	t.Run("ErrFailure", func(t *testing.T) {
		body := `{"method":"` + openapisim.MethodSubscribeQuery + `","fraction":1,"fault":{"code":"20000","sub_code":"isp.unknow-error"}}`
		if code := ctl(t, "POST", base+"/sim/failure", body, nil); code != 200 {
			t.Fatalf("failure: %d", code)
		}
		_, err := gw.QuerySubscriptions(ctx, q)
		var be *outbound.BusinessError
		if !errors.As(err, &be) || be.Code != "20000" || be.Msg != "Service Currently Unavailable" {
			t.Fatalf("answer %v", err)
		}
		ctl(t, "POST", base+"/sim/failure", `{"method":"`+openapisim.MethodSubscribeQuery+`","fraction":0}`, nil)
		if _, err := gw.QuerySubscriptions(ctx, q); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("ErrControl", func(t *testing.T) {
		for _, c := range []struct{ path, body string }{
			{"/sim/rate", `{"per_second":-1}`},
			{"/sim/rate", `{"rate":5}`}, // unknown field
			{"/sim/failure", `{"fraction":0.5,"fault":{}}`},
			{"/sim/failure", `{"fraction":2,"fault":{"code":"20000"}}`},
			{"/sim/failure", `{"fraction":0.5,"fault":{"delay":"soon"}}`},
			{"/sim/fail-user", `{"code":"40004"}`},
			{"/sim/subscribe", `{"user_ids":["2088000000000002"]}`},
			{"/sim/revoke", `{"app_id":"` + appID + `"}`},
			{"/sim/code", `not json`},
		} {
			var ans map[string]string
			if code := ctl(t, "POST", base+c.path, c.body, &ans); code != 400 || ans["error"] == "" {
				t.Errorf("%s %s: %d %v", c.path, c.body, code, ans)
			}
		}
	})
	t.Run("OKFailUserAndCode", func(t *testing.T) {
		if code := ctl(t, "POST", base+"/sim/fail-user", `{"user":"2088000000000009","code":"40004","sub_code":"USER_TEMPLATE_ILLEGAL"}`, nil); code != 200 {
			t.Fatalf("fail-user: %d", code)
		}
		if ans := send(t, base, filepath.Join(dir, "app", loadtest.PrivateKeyFile), "2088000000000009"); ans["sub_code"] != "USER_TEMPLATE_ILLEGAL" {
			t.Fatalf("answer %v", ans)
		}
		var code map[string]string
		if st := ctl(t, "POST", base+"/sim/code", `{"app_id":"`+appID+`","auth_app_id":"2021000000000100","user_id":"2088000000000100"}`, &code); st != 200 || !strings.HasPrefix(code["app_auth_code"], "code-") {
			t.Fatalf("code: %d %v", st, code)
		}
	})
}

func statsOf(t *testing.T, base string) stats {
	t.Helper()
	var st stats
	if code := ctl(t, "GET", base+"/sim/stats", "", &st); code != 200 {
		t.Fatalf("stats: %d", code)
	}
	return st
}

// send posts a template message to user, signed with the app key in
// keyFile, and returns the answer's fields, checking its shape.
func send(t *testing.T, base, keyFile, user string) map[string]string {
	t.Helper()
	data, err := os.ReadFile(keyFile)
	if err != nil {
		t.Fatal(err)
	}
	key, err := alipay.ParsePrivateKey(data)
	if err != nil {
		t.Fatal(err)
	}
	p := url.Values{"app_id": {appID}, "method": {openapisim.MethodTemplateMessageSend}, "format": {"JSON"}, "charset": {"utf-8"},
		"sign_type": {"RSA2"}, "timestamp": {time.Now().Format("2006-01-02 15:04:05")}, "version": {"1.0"},
		"biz_content": {`{"to_user_id":"` + user + `","user_template_id":"tpl","page":"p","data":"{\"keyword1\":{\"value\":\"x\"}}"}`}}
	sig, err := devpki.SignRSA2(key, []byte(openapisim.SignedContent(p)))
	if err != nil {
		t.Fatal(err)
	}
	p.Set("sign", sig)
	resp, err := http.PostForm(base+"/gateway.do", p)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var raw map[string]json.RawMessage
	if err := json.NewDecoder(resp.Body).Decode(&raw); err != nil {
		t.Fatal(err)
	}
	var ans map[string]string
	if err := json.Unmarshal(raw["alipay_open_app_mini_templatemessage_send_response"], &ans); err != nil || raw["sign"] == nil {
		t.Fatalf("answer %v: %v", raw, err)
	}
	return ans
}

func TestRun_CertMode(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	p, err := devpki.NewPKI(appID)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.WriteDir(dir); err != nil {
		t.Fatal(err)
	}
	f := func(name string) string { return filepath.Join(dir, name) }
	base := start(t, "-app-id", appID, "-app-cert", f(devpki.AppCertFile(appID)), "-root-cert", f(devpki.RootCertFile),
		"-alipay-private-key", f(devpki.AlipayPrivateKeyFile), "-alipay-cert", f(devpki.AlipayCertFile))
	env := map[string]string{"ALIPAY_ROOT_CERT_FILE": f(devpki.RootCertFile), "ALIPAY_PUBLIC_CERT_FILE": f(devpki.AlipayCertFile),
		"ALIPAY_APP_PRIVATE_KEY_FILE": f(devpki.AppPrivateKeyFile), "ALIPAY_APP_CERT_FILE": f(devpki.AppCertFile(appID))}
	t.Run("OK", func(t *testing.T) {
		gw := gateway(t, base, env)
		if _, err := gw.QuerySubscriptions(context.Background(), outbound.SubscriptionQuery{AppID: appID, UserID: "2088000000000001", TemplateIDs: []string{"tpl"}}); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("ErrOtherAppCert", func(t *testing.T) {
		// The rotated Alipay cert's key is no app's: the simulator refuses
		// what it signs.
		other := map[string]string{}
		for k, v := range env {
			other[k] = v
		}
		other["ALIPAY_APP_PRIVATE_KEY_FILE"] = f(devpki.AlipayRotatedPrivateKeyFile)
		gw := gateway(t, base, other)
		_, err := gw.QuerySubscriptions(context.Background(), outbound.SubscriptionQuery{AppID: appID, UserID: "2088000000000001", TemplateIDs: []string{"tpl"}})
		var be *outbound.BusinessError
		if !errors.As(err, &be) || be.SubCode != "isv.invalid-signature" {
			t.Fatalf("answer %v", err)
		}
	})
}

func TestParse(t *testing.T) {
	t.Parallel()
	noEnv := func(string) string { return "" }
	t.Run("OKEnv", func(t *testing.T) {
		env := map[string]string{"OPENAPISIM_APP_ID": "2021000000000001", "OPENAPISIM_APP_PUBLIC_KEY": "a.txt",
			"OPENAPISIM_ALIPAY_PRIVATE_KEY": "b.pem", "OPENAPISIM_RATE": "50", "OPENAPISIM_ADDR": "127.0.0.1:1"}
		o, err := parse([]string{"-addr", "127.0.0.1:2"}, func(k string) string { return env[k] }, io.Discard)
		if err != nil {
			t.Fatal(err)
		}
		if o.appIDs != "2021000000000001" || o.rate != 50 || o.addr != "127.0.0.1:2" || !o.lean {
			t.Fatalf("options %+v", o)
		}
	})
	t.Run("ErrMissing", func(t *testing.T) {
		for _, args := range [][]string{
			{},
			{"-app-id", "1", "-alipay-private-key", "k"},
			{"-app-id", "1", "-alipay-private-key", "k", "-app-public-key", "a", "-app-cert", "c"},
			{"-app-id", "1", "-alipay-private-key", "k", "-app-cert", "c"},
			{"-app-id", "1", "-alipay-private-key", "k", "-app-public-key", "a", "-failure", "1.5"},
			{"-app-id", "1", "-alipay-private-key", "k", "-app-public-key", "a", "extra"},
		} {
			if _, err := parse(args, noEnv, io.Discard); err == nil {
				t.Errorf("%q accepted", args)
			}
		}
		if _, err := parse(nil, func(k string) string { return map[string]string{"OPENAPISIM_RATE": "fast"}[k] }, io.Discard); err == nil || !strings.Contains(err.Error(), "OPENAPISIM_RATE") {
			t.Errorf("bad env: %v", err)
		}
	})
	t.Run("ErrKeyFile", func(t *testing.T) {
		err := run(context.Background(), []string{"-app-id", "1", "-alipay-private-key", "/nonexistent", "-app-public-key", "/nonexistent"}, noEnv, io.Discard, nil)
		if err == nil {
			t.Fatal("missing key files accepted")
		}
	})
}
