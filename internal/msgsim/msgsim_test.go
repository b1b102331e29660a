package msgsim_test

import (
	"context"
	"crypto/rsa"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/alipay-notify-gateway/gateway/internal/alipay"
	"github.com/alipay-notify-gateway/gateway/internal/msgchannel"
	"github.com/alipay-notify-gateway/gateway/internal/msgsim"
	"github.com/alipay-notify-gateway/gateway/internal/testkit"
)

// verifier verifies what the simulator signs (with testkit.AlipayKey) for
// testkit.AppID.
func verifier(t testing.TB) *alipay.Verifier {
	t.Helper()
	return testkit.Verifier(t, testkit.KeyApp())
}

func start(t *testing.T) (*msgsim.Server, string) {
	t.Helper()
	sim := msgsim.New(msgsim.Config{Apps: map[string]*rsa.PublicKey{testkit.AppID: &testkit.AppKey().PublicKey}, PlatformKey: testkit.AlipayKey(),
		AckTimeout: 300 * time.Millisecond, RetryAfter: 50 * time.Millisecond, Logger: testkit.Logger(t)})
	mux := http.NewServeMux()
	mux.Handle("/sim/", sim.Control())
	mux.Handle("/", sim)
	srv := httptest.NewServer(mux)
	t.Cleanup(func() { sim.Close(); srv.Close() })
	return sim, srv.URL
}

func signed(t *testing.T, key *rsa.PrivateKey, params map[string]string) string {
	t.Helper()
	p, err := msgchannel.SignParams(params, key)
	if err != nil {
		t.Fatal(err)
	}
	v := url.Values{}
	for k, val := range p {
		v.Set(k, val)
	}
	return v.Encode()
}

func now() string { return strconv.FormatInt(time.Now().UnixMilli(), 10) }

// register calls register.do and returns the answer and its zone cookie.
func register(t *testing.T, base string, key *rsa.PrivateKey, nonce, ts string) (string, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, base+"/websocket/register.do?"+signed(t, key, map[string]string{
		"app_id": testkit.AppID, "charset": "UTF-8", "timestamp": ts, "sdk_version": "test", "nonce": nonce}), nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded;charset=UTF-8")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	zone := ""
	for _, c := range resp.Cookies() {
		if c.Name == "zone" {
			zone = c.Value
		}
	}
	return string(b), zone
}

func connect(t *testing.T, base, token, cookie string) (*websocket.Conn, int, error) {
	t.Helper()
	u := strings.Replace(base, "http://", "ws://", 1) + "/websocket?" + signed(t, testkit.AppKey(), map[string]string{
		"app_id": testkit.AppID, "charset": "UTF-8", "timestamp": now(), "sdk_version": "test", "link_token": token})
	h := http.Header{"Content-Type": {"application/x-www-form-urlencoded;charset=UTF-8"}}
	if cookie != "" {
		h.Set("Cookie", cookie)
	}
	c, resp, err := websocket.Dial(context.Background(), u, &websocket.DialOptions{HTTPHeader: h})
	status := 0
	if resp != nil {
		status = resp.StatusCode
	}
	if c != nil {
		t.Cleanup(func() { _ = c.CloseNow() })
	}
	return c, status, err
}

// session registers and connects.
func session(t *testing.T, base string) *websocket.Conn {
	t.Helper()
	answer, zone := register(t, base, testkit.AppKey(), strconv.FormatInt(time.Now().UnixNano(), 10), now())
	tok, err := msgchannel.RegisterAnswer(verifier(t), testkit.AppID, []byte(answer))
	if err != nil {
		t.Fatalf("%v: %s", err, answer)
	}
	c, _, err := connect(t, base, tok, "zone="+zone+";")
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func read(t *testing.T, c *websocket.Conn) (*msgchannel.Frame, []byte) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, b, err := c.Read(ctx)
	if err != nil {
		t.Fatal(err)
	}
	f, err := msgchannel.ParseFrame(b)
	if err != nil {
		t.Fatal(err)
	}
	return f, b
}

func ack(t *testing.T, c *websocket.Conn, f *msgchannel.Frame, status string) {
	t.Helper()
	if err := c.Write(context.Background(), websocket.MessageText, f.Ack(status)); err != nil {
		t.Fatal(err)
	}
}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return c
}

func TestRegister(t *testing.T) {
	t.Parallel()
	sim, base := start(t)
	answer, zone := register(t, base, testkit.AppKey(), "n1", now())
	if _, err := msgchannel.RegisterAnswer(verifier(t), testkit.AppID, []byte(answer)); err != nil || zone == "" {
		t.Fatalf("answer %s, zone %q: %v", answer, zone, err)
	}
	for name, c := range map[string]struct {
		key          *rsa.PrivateKey
		nonce, ts    string
		wantInAnswer string
	}{
		"wrong key":      {testkit.OtherKey(), "n2", now(), "isv.invalid-signature"},
		"nonce replayed": {testkit.AppKey(), "n1", now(), "isv.repeated-nonce"},
		"stale":          {testkit.AppKey(), "n3", strconv.FormatInt(time.Now().Add(-time.Hour).UnixMilli(), 10), "away from now"},
	} {
		answer, zone := register(t, base, c.key, c.nonce, c.ts)
		if !strings.Contains(answer, c.wantInAnswer) || zone != "" {
			t.Errorf("%s: answer %s, zone %q", name, answer, zone)
		}
		if _, err := msgchannel.RegisterAnswer(verifier(t), testkit.AppID, []byte(answer)); err == nil {
			t.Errorf("%s: the refusal reads as a success", name)
		}
	}
	sim.RefuseRegistrations(testkit.AppID, 1)
	if answer, _ := register(t, base, testkit.AppKey(), "n4", now()); !strings.Contains(answer, `"code":"20000"`) {
		t.Fatalf("refusal on command: %s", answer)
	}
	if answer, _ := register(t, base, testkit.AppKey(), "n5", now()); !strings.Contains(answer, `"code":"10000"`) {
		t.Fatalf("after the refusal: %s", answer)
	}
	if sim.Registrations(testkit.AppID) != 2 {
		t.Fatalf("%d registrations", sim.Registrations(testkit.AppID))
	}
}

func TestConnect(t *testing.T) {
	t.Parallel()
	sim, base := start(t)
	answer, zone := register(t, base, testkit.AppKey(), "n1", now())
	tok, err := msgchannel.RegisterAnswer(verifier(t), testkit.AppID, []byte(answer))
	if err != nil {
		t.Fatal(err)
	}
	if _, status, err := connect(t, base, tok, ""); err == nil || status != http.StatusForbidden {
		t.Fatalf("without the zone cookie: %d %v", status, err)
	}
	// The failed try used the token up.
	if _, status, _ := connect(t, base, tok, "zone="+zone+";"); status != http.StatusForbidden {
		t.Fatalf("token reused: %d", status)
	}
	if _, status, _ := connect(t, base, "made-up", "zone="+zone); status != http.StatusForbidden {
		t.Fatalf("unknown token: %d", status)
	}
	session(t, base)
	if err := sim.WaitConnects(ctx(t), testkit.AppID, 1); err != nil {
		t.Fatal(err)
	}
}

func TestDelivery(t *testing.T) {
	t.Parallel()
	sim, base := start(t)
	content := `{"mini_app_id":"2014072300007148"}`
	// Delivered before the app connects: sent when it does.
	if err := sim.Deliver(testkit.AppID, "alipay.open.mini.version.audit.passed", content, "m1", 1516797622752); err != nil {
		t.Fatal(err)
	}
	c := session(t, base)
	f, _ := read(t, c)
	n, err := verifier(t).VerifyChannelMessage(testkit.AppID, f.Message(), time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if n.NotifyID != "m1" || n.BizContent != content || n.UTCTimestamp != 1516797622752 || f.StreamID == "" {
		t.Fatalf("%+v", n)
	}

	// Not acknowledged: sent again after AckTimeout, with a new stream-id.
	again, _ := read(t, c)
	if again.MsgID != "m1" || again.StreamID == f.StreamID {
		t.Fatalf("redelivery %+v", again)
	}
	// FAIL: sent again after RetryAfter.
	ack(t, c, again, msgchannel.AckFail)
	third, _ := read(t, c)
	if third.MsgID != "m1" {
		t.Fatalf("after FAIL: %+v", third)
	}
	ack(t, c, third, msgchannel.AckSuccess)
	if err := sim.WaitIdle(ctx(t), testkit.AppID); err != nil {
		t.Fatal(err)
	}
	if got := sim.Sends(testkit.AppID, "m1"); got != 3 {
		t.Fatalf("sent %d times", got)
	}
	acks := sim.AcksOf(testkit.AppID, "m1")
	if len(acks) != 2 || acks[0].Status != msgchannel.AckFail || acks[1].Status != msgchannel.AckSuccess || !acks[1].StreamOK {
		t.Fatalf("acks %+v", acks)
	}

	// A forged message does not verify, and is sent once.
	if err := sim.DeliverForged(testkit.AppID, "alipay.open.mini.version.audit.passed", content, "forged", 0); err != nil {
		t.Fatal(err)
	}
	forged, _ := read(t, c)
	_, err = verifier(t).VerifyChannelMessage(testkit.AppID, forged.Message(), time.Now())
	if err == nil {
		t.Fatal("a forged message verifies")
	}

	// An ack with a stream-id the message was not sent with is a violation.
	bad := *forged
	bad.StreamID = "nope"
	ack(t, c, &bad, msgchannel.AckFail)
	testkit.Eventually(t, 5*time.Second, func() bool { return len(sim.Violations()) > 0 })
	if v := sim.Violations(); len(v) != 1 || !strings.Contains(v[0], "stream-id") {
		t.Fatalf("violations %v", v)
	}

	// Dropped: the app sees the connection end.
	if sim.DropConnections(testkit.AppID) != 1 {
		t.Fatal("nothing dropped")
	}
	rctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, _, err := c.Read(rctx); err == nil {
		t.Fatal("read after the drop")
	}
}

func TestMessageFrame_AsAlipaySendsIt(t *testing.T) {
	t.Parallel()
	sim, _ := start(t)
	msg, err := sim.Message(testkit.AppID, "alipay.open.mini.version.audit.passed", `{"a":"\"}"}`, "id-1", 42, false)
	if err != nil {
		t.Fatal(err)
	}
	f, err := msgchannel.ParseFrame(msgchannel.EncodeFrame("s", "sys", "1.2.3.4", msg))
	if err != nil {
		t.Fatal(err)
	}
	n, err := verifier(t).VerifyChannelMessage(testkit.AppID, f.Message(), time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if n.BizContent != `{"a":"\"}"}` || n.UTCTimestamp != 42 || f.Version != "1.0" || f.Charset != "UTF-8" || f.Type != "message" {
		t.Fatalf("%+v %+v", n, f)
	}
}

func TestControl(t *testing.T) {
	t.Parallel()
	sim, base := start(t)
	post := func(path string, form url.Values) (int, map[string]any) {
		resp, err := http.PostForm(base+path, form)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var out map[string]any
		_ = json.NewDecoder(resp.Body).Decode(&out)
		return resp.StatusCode, out
	}
	if code, out := post("/sim/deliver", url.Values{"app_id": {testkit.AppID}, "sample": {"audit-passed"}, "msg_id": {"c1"}}); code != http.StatusAccepted || out["msg_id"] != "c1" {
		t.Fatalf("%d %v", code, out)
	}
	if code, _ := post("/sim/deliver", url.Values{"app_id": {testkit.AppID}, "sample": {"auth-granted"}}); code != http.StatusBadRequest {
		t.Fatalf("an HTTP-only sample: %d", code)
	}
	if code, _ := post("/sim/deliver", url.Values{"app_id": {"nope"}, "msg_api": {"x"}, "content": {"{}"}}); code != http.StatusBadRequest {
		t.Fatalf("unknown app: %d", code)
	}
	if code, _ := post("/sim/refuse", url.Values{"app_id": {testkit.AppID}, "n": {"1"}}); code != http.StatusOK {
		t.Fatal(code)
	}
	if p := sim.Pending(testkit.AppID); len(p) != 1 || p[0] != "c1" {
		t.Fatalf("pending %v", p)
	}
	resp, err := http.Get(base + "/sim/status")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if !strings.Contains(string(b), `"pending":["c1"]`) {
		t.Fatalf("status %s", b)
	}
}
