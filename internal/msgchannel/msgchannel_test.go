package msgchannel_test

import (
	"context"
	"encoding/json"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/alipay-notify-gateway/gateway/internal/alipay"
	"github.com/alipay-notify-gateway/gateway/internal/metrics"
	"github.com/alipay-notify-gateway/gateway/internal/msgchannel"
	"github.com/alipay-notify-gateway/gateway/internal/notify"
	"github.com/alipay-notify-gateway/gateway/internal/pgtest"
	"github.com/alipay-notify-gateway/gateway/internal/postgres"
	"github.com/alipay-notify-gateway/gateway/internal/testkit"
	"github.com/alipay-notify-gateway/gateway/internal/view"
)

const sampleTS = 1516797622752 // the samples' utc_timestamp

// TestSamples_SameStateAsHTTP sends the six sample messages over the
// WebSocket into one database and over the HTTP intake into another, and
// compares the rows and the business state they lead to.
func TestSamples_SameStateAsHTTP(t *testing.T) {
	t.Parallel()
	r := newRig(t, nil, nil)
	httpDB := pgtest.New(t)
	ctx := waitCtx(t)
	var ids []string
	for _, s := range messageSamples() {
		id := "ws-" + s.Name
		ids = append(ids, id)
		if err := r.sim.Deliver(testkit.AppID, s.Method, s.Form["biz_content"], id, sampleTS); err != nil {
			t.Fatal(err)
		}
		// One at a time, in the same order as over HTTP: order matters to
		// state.
		if _, err := r.sim.WaitAck(ctx, testkit.AppID, id, msgchannel.AckSuccess); err != nil {
			t.Fatal(err)
		}
		httpIngest(t, r.v, httpDB, s, id)
	}
	if len(ids) != 6 {
		t.Fatalf("%d message samples; want 6", len(ids))
	}
	for _, id := range ids {
		ws, err := r.db.Notification(ctx, testkit.AppID, id)
		if err != nil {
			t.Fatalf("%s over the WebSocket: %v", id, err)
		}
		ht, err := httpDB.Notification(ctx, testkit.AppID, id)
		if err != nil {
			t.Fatal(err)
		}
		if ws.Channel != notify.ChannelWebSocket || ht.Channel != notify.ChannelHTTP {
			t.Fatalf("%s: channels %q and %q", id, ws.Channel, ht.Channel)
		}
		if ws.MsgMethod != ht.MsgMethod || *ws.UTCTimestamp != *ht.UTCTimestamp || ws.Status != ht.Status ||
			ws.Error != ht.Error || ws.Biz != ht.Biz || ws.DeliveryCount != 1 || ws.Encrypted {
			t.Fatalf("%s differs:\nwebsocket %+v\nhttp      %+v", id, ws, ht)
		}
		if ws.Status == notify.StatusFailed || ws.Status == notify.StatusUnhandled {
			t.Fatalf("%s: status %s (%s)", id, ws.Status, ws.Error)
		}
		if strings.Contains(ws.Biz, "211203BB6e8df9252c9e179d9f4c94d57d510X00") {
			t.Fatalf("%s: a token is stored in clear", id)
		}
	}
	sameState(t, ctx, r.db, httpDB)
	if v := r.sim.Violations(); len(v) > 0 {
		t.Fatalf("protocol violations: %v", v)
	}
}

// sameState compares the business state the samples lead to in two
// databases, times of processing aside.
func sameState(t *testing.T, ctx context.Context, a, b *postgres.DB) {
	t.Helper()
	reads := map[string]func(db *postgres.DB) (any, error){
		"mini app 2014072300007148": func(db *postgres.DB) (any, error) { return db.MiniApp(ctx, "2014072300007148") },
		"order 2394834823942343":    func(db *postgres.DB) (any, error) { return db.Order(ctx, "2394834823942343") },
		"order 2394834823942344":    func(db *postgres.DB) (any, error) { return db.Order(ctx, "2394834823942344") },
		"authorization":             func(db *postgres.DB) (any, error) { return db.Authorization(ctx, testkit.AppID, testkit.MerchantAppID) },
	}
	found := 0
	for name, read := range reads {
		va, errA := read(a)
		vb, errB := read(b)
		if notify.ErrorCode(errA) != notify.ErrorCode(errB) {
			t.Fatalf("%s: %v over the WebSocket, %v over HTTP", name, errA, errB)
		}
		if errA != nil {
			continue
		}
		found++
		if ja, jb := normalize(t, va), normalize(t, vb); !reflect.DeepEqual(ja, jb) {
			t.Fatalf("%s differs:\nwebsocket %v\nhttp      %v", name, ja, jb)
		}
	}
	if found < 3 {
		t.Fatalf("only %d of the expected states exist", found)
	}
}

// normalize returns v as generic JSON without the times of processing.
func normalize(t *testing.T, v any) any {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	var out any
	if err := json.Unmarshal(b, &out); err != nil {
		t.Fatal(err)
	}
	var strip func(any)
	strip = func(x any) {
		switch x := x.(type) {
		case map[string]any:
			for _, k := range []string{"updated_at", "received_at", "processed_at"} {
				delete(x, k)
			}
			for _, c := range x {
				strip(c)
			}
		case []any:
			for _, c := range x {
				strip(c)
			}
		}
	}
	strip(out)
	return out
}

func TestForgedMessage_RefusedAndNothingChanges(t *testing.T) {
	t.Parallel()
	r := newRig(t, nil, nil)
	ctx := waitCtx(t)
	s := messageSamples()[3] // audit-passed
	if err := r.sim.DeliverForged(testkit.AppID, s.Method, s.Form["biz_content"], "forged-1", sampleTS); err != nil {
		t.Fatal(err)
	}
	if _, err := r.sim.WaitAck(ctx, testkit.AppID, "forged-1", msgchannel.AckFail); err != nil {
		t.Fatal(err)
	}
	if _, err := r.db.Notification(ctx, testkit.AppID, "forged-1"); notify.ErrorCode(err) != notify.ENOTFOUND {
		t.Fatalf("a forged message was stored: %v", err)
	}
	if _, err := r.db.MiniApp(ctx, "2014072300007148"); notify.ErrorCode(err) != notify.ENOTFOUND {
		t.Fatalf("a forged message changed state: %v", err)
	}
	// The channel carries on: a genuine message after it is taken.
	if err := r.sim.Deliver(testkit.AppID, s.Method, s.Form["biz_content"], "genuine-1", sampleTS); err != nil {
		t.Fatal(err)
	}
	if _, err := r.sim.WaitAck(ctx, testkit.AppID, "genuine-1", msgchannel.AckSuccess); err != nil {
		t.Fatal(err)
	}
	if got := len(r.sim.AcksOf(testkit.AppID, "forged-1")); got != 1 {
		t.Fatalf("forged message acknowledged %d times", got)
	}
	if !r.client.Connected() || r.client.Reconnects() != 0 {
		t.Fatal("a forged message cost the connection")
	}
}

func TestDroppedConnection_ReconnectsAndLosesNothing(t *testing.T) {
	t.Parallel()
	r := newRig(t, nil, nil)
	ctx := waitCtx(t)
	ss := messageSamples()
	if err := r.sim.Deliver(testkit.AppID, ss[1].Method, ss[1].Form["biz_content"], "before-drop", sampleTS); err != nil {
		t.Fatal(err)
	}
	if _, err := r.sim.WaitAck(ctx, testkit.AppID, "before-drop", msgchannel.AckSuccess); err != nil {
		t.Fatal(err)
	}
	if err := r.client.Ready(); err != nil {
		t.Fatalf("connected but not ready: %v", err)
	}

	// Drop it, and refuse registrations meanwhile: not ready, and why.
	r.sim.RefuseRegistrations(testkit.AppID, 1000)
	if n := r.sim.DropConnections(testkit.AppID); n != 1 {
		t.Fatalf("dropped %d connections", n)
	}
	eventually(t, "not ready after the drop", func() bool {
		err := r.client.Ready()
		return err != nil && strings.Contains(err.Error(), testkit.AppID) && strings.Contains(err.Error(), "register refused")
	})
	if counter(t, r.metrics, "alipay_gateway_websocket_connected", testkit.AppID) != 0 {
		t.Fatal("websocket_connected is 1 while disconnected")
	}
	// Delivered while the app is away: sent when it is back.
	if err := r.sim.Deliver(testkit.AppID, ss[2].Method, ss[2].Form["biz_content"], "during-drop", sampleTS); err != nil {
		t.Fatal(err)
	}
	r.sim.RefuseRegistrations(testkit.AppID, 0)
	if err := r.sim.WaitConnects(ctx, testkit.AppID, 2); err != nil {
		t.Fatal(err)
	}
	if _, err := r.sim.WaitAck(ctx, testkit.AppID, "during-drop", msgchannel.AckSuccess); err != nil {
		t.Fatal(err)
	}
	if err := r.sim.Deliver(testkit.AppID, ss[3].Method, ss[3].Form["biz_content"], "after-drop", sampleTS); err != nil {
		t.Fatal(err)
	}
	if _, err := r.sim.WaitAck(ctx, testkit.AppID, "after-drop", msgchannel.AckSuccess); err != nil {
		t.Fatal(err)
	}
	if r.client.Reconnects() < 1 || counter(t, r.metrics, "alipay_gateway_websocket_reconnects_total", testkit.AppID) < 1 {
		t.Fatalf("reconnects %d, metric %v", r.client.Reconnects(), counter(t, r.metrics, "alipay_gateway_websocket_reconnects_total", testkit.AppID))
	}
	if counter(t, r.metrics, "alipay_gateway_websocket_connected", testkit.AppID) != 1 {
		t.Fatal("websocket_connected is not 1 once reconnected")
	}
	if r.sim.Registrations(testkit.AppID) < 2 {
		t.Fatalf("%d registrations: a reconnection must register again", r.sim.Registrations(testkit.AppID))
	}
	// Nothing acknowledged SUCCESS is missing from the inbox.
	for _, a := range r.sim.Acks() {
		if a.Status != msgchannel.AckSuccess {
			continue
		}
		if _, err := r.db.Notification(ctx, testkit.AppID, a.MsgID); err != nil {
			t.Fatalf("%s acknowledged but not stored: %v", a.MsgID, err)
		}
	}
	if p := r.sim.Pending(testkit.AppID); len(p) != 0 {
		t.Fatalf("pending: %v", p)
	}
}

func TestBothChannels_OneEffect(t *testing.T) {
	t.Parallel()
	r := newRig(t, nil, nil)
	ctx := waitCtx(t)
	ss := messageSamples()

	// HTTP first, then the same message over the WebSocket.
	httpIngest(t, r.v, r.db, ss[1], "both-1")
	if err := r.sim.Deliver(testkit.AppID, ss[1].Method, ss[1].Form["biz_content"], "both-1", sampleTS); err != nil {
		t.Fatal(err)
	}
	if _, err := r.sim.WaitAck(ctx, testkit.AppID, "both-1", msgchannel.AckSuccess); err != nil {
		t.Fatal(err)
	}
	n, err := r.db.Notification(ctx, testkit.AppID, "both-1")
	if err != nil {
		t.Fatal(err)
	}
	if n.DeliveryCount != 2 || n.Channel != notify.ChannelHTTP || n.Status != notify.StatusApplied {
		t.Fatalf("after HTTP then WebSocket: %+v", n)
	}

	// The WebSocket first, then HTTP.
	if err := r.sim.Deliver(testkit.AppID, ss[2].Method, ss[2].Form["biz_content"], "both-2", sampleTS); err != nil {
		t.Fatal(err)
	}
	if _, err := r.sim.WaitAck(ctx, testkit.AppID, "both-2", msgchannel.AckSuccess); err != nil {
		t.Fatal(err)
	}
	if out := httpIngest(t, r.v, r.db, ss[2], "both-2"); !out.Duplicate || out.DeliveryCount != 2 {
		t.Fatalf("HTTP after the WebSocket: %+v", out)
	}
	n, err = r.db.Notification(ctx, testkit.AppID, "both-2")
	if err != nil {
		t.Fatal(err)
	}
	if n.DeliveryCount != 2 || n.Channel != notify.ChannelWebSocket {
		t.Fatalf("after WebSocket then HTTP: %+v", n)
	}
	list, _, err := r.db.Notifications(ctx, view.NotificationFilter{AppID: testkit.AppID})
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != 2 {
		t.Fatalf("%d rows; want one per message", len(list))
	}
	o, err := r.db.Order(ctx, "2394834823942343")
	if err != nil {
		t.Fatal(err)
	}
	if len(o.History) != 1 {
		t.Fatalf("order history %+v: the second delivery had an effect", o.History)
	}
}

func TestDatabaseOutage_AckFailThenRedelivered(t *testing.T) {
	t.Parallel()
	db := pgtest.New(t)
	inbox := &flakyInbox{inner: db}
	inbox.fail.Store(2)
	r := newRig(t, db, inbox)
	ctx := waitCtx(t)
	s := messageSamples()[3]
	if err := r.sim.Deliver(testkit.AppID, s.Method, s.Form["biz_content"], "outage-1", sampleTS); err != nil {
		t.Fatal(err)
	}
	if _, err := r.sim.WaitAck(ctx, testkit.AppID, "outage-1", msgchannel.AckFail); err != nil {
		t.Fatal(err)
	}
	if _, err := r.sim.WaitAck(ctx, testkit.AppID, "outage-1", msgchannel.AckSuccess); err != nil {
		t.Fatal(err)
	}
	acks := r.sim.AcksOf(testkit.AppID, "outage-1")
	if len(acks) != 3 || acks[0].Status != msgchannel.AckFail || acks[1].Status != msgchannel.AckFail || acks[2].Status != msgchannel.AckSuccess {
		t.Fatalf("acks %+v; want FAIL, FAIL, SUCCESS", acks)
	}
	if got := r.sim.Sends(testkit.AppID, "outage-1"); got != 3 {
		t.Fatalf("sent %d times; want 3", got)
	}
	n, err := db.Notification(ctx, testkit.AppID, "outage-1")
	if err != nil {
		t.Fatal(err)
	}
	if n.DeliveryCount != 1 || n.Status != notify.StatusApplied {
		t.Fatalf("stored %+v", n)
	}
}

func TestShutdown_FinishesInFlightThenCloses(t *testing.T) {
	t.Parallel()
	db := pgtest.New(t)
	gate := &gateInbox{inner: db, entered: make(chan struct{}, 1), release: make(chan struct{})}
	r := newRig(t, db, gate)
	ctx := waitCtx(t)
	s := messageSamples()[3]
	if err := r.sim.Deliver(testkit.AppID, s.Method, s.Form["biz_content"], "inflight-1", sampleTS); err != nil {
		t.Fatal(err)
	}
	select {
	case <-gate.entered:
	case <-ctx.Done():
		t.Fatal("the message never reached the inbox")
	}
	stopped := make(chan struct{})
	go func() { r.stop(); close(stopped) }()
	select {
	case <-stopped:
		t.Fatal("Run returned with a message in flight")
	case <-time.After(200 * time.Millisecond):
	}
	close(gate.release)
	select {
	case <-stopped:
	case <-ctx.Done():
		t.Fatal("Run did not return after the in-flight message was done")
	}
	if acks := r.sim.AcksOf(testkit.AppID, "inflight-1"); len(acks) != 1 || acks[0].Status != msgchannel.AckSuccess {
		t.Fatalf("acks %+v; want one SUCCESS, sent before the close", acks)
	}
	if _, err := db.Notification(ctx, testkit.AppID, "inflight-1"); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the simulator to see the close", func() bool { return r.sim.Connections(testkit.AppID) == 0 })
	if r.client.Connected() || r.client.Ready() == nil {
		t.Fatal("still connected after Run returned")
	}
}

func TestRegistration_Refusals(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name     string
		appKey   bool // sign with the right app key
		platform bool // the simulator signs with the platform key the app trusts
		want     string
	}{
		{"app key wrong", false, true, "isv.invalid-signature"},
		{"answer not Alipay's", true, false, "signature does not verify"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			signer := testkit.AlipayKey()
			if !c.platform {
				signer = testkit.OtherKey()
			}
			sim, url := newSim(t, signer, testkit.AppID)
			key := testkit.AppKey()
			if !c.appKey {
				key = testkit.OtherKey()
			}
			v := testkit.Verifier(t, newApp(testkit.AppID, key, alipay.DeliverWebSocket))
			m, err := msgchannel.NewManager(msgchannel.Config{Verifier: v, Intake: pipeline(t, &flakyInbox{}, nil), Host: url, AllowInsecure: true,
				Logger: testkit.Logger(t), Backoff: []time.Duration{20 * time.Millisecond}})
			if err != nil {
				t.Fatal(err)
			}
			run(t, m.Run)
			eventually(t, "a refusal", func() bool {
				err := m.Ready(context.Background())
				return err != nil && strings.Contains(err.Error(), c.want)
			})
			if !strings.Contains(m.Ready(context.Background()).Error(), "app "+testkit.AppID) {
				t.Fatalf("readiness error does not name the app: %v", m.Ready(context.Background()))
			}
			if sim.Connects(testkit.AppID) != 0 {
				t.Fatal("connected anyway")
			}
		})
	}
}

func TestManager(t *testing.T) {
	t.Parallel()
	const wsApp, bothApp, httpApp = "2021000000000011", "2021000000000012", "2021000000000013"
	sim, url := newSim(t, testkit.AlipayKey(), wsApp, bothApp)
	v := testkit.Verifier(t,
		newApp(wsApp, testkit.AppKey(), alipay.DeliverWebSocket),
		newApp(bothApp, testkit.AppKey(), alipay.DeliverBoth),
		newApp(httpApp, nil, alipay.DeliverHTTP),
	)
	cfg := msgchannel.Config{Verifier: v, Intake: pipeline(t, pgtest.New(t), nil), Host: url, AllowInsecure: true, Metrics: metrics.New(),
		Logger: testkit.Logger(t)}
	fast(&cfg)
	m, err := msgchannel.NewManager(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if got := m.AppIDs(); !reflect.DeepEqual(got, []string{wsApp, bothApp}) {
		t.Fatalf("apps %v; want the two that use the WebSocket", got)
	}
	err = m.Ready(context.Background())
	if err == nil || !strings.Contains(err.Error(), wsApp) || !strings.Contains(err.Error(), bothApp) {
		t.Fatalf("ready before running: %v", err)
	}
	stop := run(t, m.Run)
	eventually(t, "ready", func() bool { return m.Ready(context.Background()) == nil })
	ctx := waitCtx(t)
	for i, id := range []string{wsApp, bothApp} {
		msgID := "m-" + strconv.Itoa(i)
		if err := sim.Deliver(id, "alipay.open.mini.version.audit.passed", `{"mini_app_id":"3000000000000`+strconv.Itoa(i)+`"}`, msgID, sampleTS); err != nil {
			t.Fatal(err)
		}
		if _, err := sim.WaitAck(ctx, id, msgID, msgchannel.AckSuccess); err != nil {
			t.Fatal(err)
		}
	}
	stop()
	if err := m.Ready(context.Background()); err == nil {
		t.Fatal("ready after stopping")
	}

	// No app on the WebSocket: nothing to run, always ready.
	v2 := testkit.Verifier(t, newApp(httpApp, nil, alipay.DeliverHTTP))
	none, err := msgchannel.NewManager(msgchannel.Config{Verifier: v2, Intake: pipeline(t, &flakyInbox{}, nil), Host: "openchannel.alipay.com"})
	if err != nil {
		t.Fatal(err)
	}
	if len(none.AppIDs()) != 0 || none.Ready(context.Background()) != nil || none.Run(context.Background()) != nil {
		t.Fatal("a manager without apps is not idle")
	}
	// An app on the WebSocket without a private key cannot start.
	v3 := testkit.Verifier(t, newApp(wsApp, nil, alipay.DeliverWebSocket))
	if _, err := msgchannel.NewManager(msgchannel.Config{Verifier: v3, Intake: pipeline(t, &flakyInbox{}, nil), Host: url}); err == nil ||
		!strings.Contains(err.Error(), "private key") {
		t.Fatalf("no private key: %v", err)
	}
}

func TestNewClient_Insecure(t *testing.T) {
	t.Parallel()
	v := testkit.Verifier(t, newApp(testkit.AppID, testkit.AppKey(), alipay.DeliverWebSocket))
	app, _ := v.App(testkit.AppID)
	t.Run("ErrPlainWebSocket", func(t *testing.T) {
		_, err := msgchannel.NewClient(msgchannel.Config{App: app, Verifier: v, Intake: pipeline(t, &flakyInbox{}, nil), Host: "http://127.0.0.1:8090"})
		if err == nil || !strings.Contains(err.Error(), "ALIPAY_MSG_ALLOW_INSECURE") {
			t.Fatalf("err = %v", err)
		}
	})
	t.Run("OK", func(t *testing.T) {
		for _, c := range []msgchannel.Config{
			{App: app, Verifier: v, Intake: pipeline(t, &flakyInbox{}, nil), Host: "openchannel.alipay.com"},
			{App: app, Verifier: v, Intake: pipeline(t, &flakyInbox{}, nil), Host: "http://127.0.0.1:8090", AllowInsecure: true},
		} {
			if _, err := msgchannel.NewClient(c); err != nil {
				t.Fatal(err)
			}
		}
	})
}

func TestEndpoints(t *testing.T) {
	t.Parallel()
	cases := []struct{ host, reg, ws string }{
		{"openchannel.alipay.com", "https://openchannel.alipay.com/websocket/register.do", "wss://openchannel.alipay.com/websocket"},
		{"openchannel-sandbox.dl.alipaydev.com", "https://openchannel-sandbox.dl.alipaydev.com/websocket/register.do", "wss://openchannel-sandbox.dl.alipaydev.com/websocket"},
		{"http://127.0.0.1:8090", "http://127.0.0.1:8090/websocket/register.do", "ws://127.0.0.1:8090/websocket"},
		{"http://127.0.0.1:8090/", "http://127.0.0.1:8090/websocket/register.do", "ws://127.0.0.1:8090/websocket"},
		{"https://sim.example:8443/alipay", "https://sim.example:8443/alipay/websocket/register.do", "wss://sim.example:8443/alipay/websocket"},
		{"ws://127.0.0.1:1", "http://127.0.0.1:1/websocket/register.do", "ws://127.0.0.1:1/websocket"},
	}
	for _, c := range cases {
		reg, ws, err := msgchannel.Endpoints(c.host)
		if err != nil || reg.String() != c.reg || ws.String() != c.ws {
			t.Errorf("%s: %v %v %v", c.host, reg, ws, err)
		}
	}
	for _, bad := range []string{"", "ftp://x", "http://", "http://h?x=1"} {
		if _, _, err := msgchannel.Endpoints(bad); err == nil {
			t.Errorf("%q: no error", bad)
		}
	}
}

// TestPing: pings keep a live connection, and find a dead one: a peer
// that stops answering is a lost connection, re-established.
func TestPing(t *testing.T) {
	t.Parallel()
	r := newRig(t, nil, nil, func(c *msgchannel.Config) { c.PongTimeout = 300 * time.Millisecond })
	ctx := waitCtx(t)
	if err := r.sim.WaitConnects(ctx, testkit.AppID, 1); err != nil {
		t.Fatal(err)
	}
	time.Sleep(500 * time.Millisecond) // several pings at 100 ms
	if !r.client.Connected() || r.client.Reconnects() != 0 || r.sim.Connects(testkit.AppID) != 1 {
		t.Fatal("pings cost a live connection")
	}
	r.sim.MutePings(testkit.AppID, true)
	eventually(t, "the silent peer to be found out", func() bool { return r.client.Reconnects() >= 1 })
	r.sim.MutePings(testkit.AppID, false)
	eventually(t, "connected again", func() bool { return r.client.Ready() == nil })
	s := messageSamples()[3]
	if err := r.sim.Deliver(testkit.AppID, s.Method, s.Form["biz_content"], "after-silence", sampleTS); err != nil {
		t.Fatal(err)
	}
	if _, err := r.sim.WaitAck(ctx, testkit.AppID, "after-silence", msgchannel.AckSuccess); err != nil {
		t.Fatal(err)
	}
}

// TestUnreachable: readiness says why, without the request's sign.
func TestUnreachable(t *testing.T) {
	t.Parallel()
	v := testkit.Verifier(t, newApp(testkit.AppID, testkit.AppKey(), alipay.DeliverWebSocket))
	m, err := msgchannel.NewManager(msgchannel.Config{Verifier: v, Intake: pipeline(t, &flakyInbox{}, nil), Host: "http://127.0.0.1:1", AllowInsecure: true,
		Logger: testkit.Logger(t), Backoff: []time.Duration{20 * time.Millisecond}})
	if err != nil {
		t.Fatal(err)
	}
	run(t, m.Run)
	eventually(t, "a refused connection", func() bool {
		err := m.Ready(context.Background())
		return err != nil && strings.Contains(err.Error(), "register")
	})
	if msg := m.Ready(context.Background()).Error(); strings.Contains(msg, "sign=") || strings.Contains(msg, "nonce=") {
		t.Fatalf("readiness error holds the request's query: %s", msg)
	}
}

// TestReplayedData_NoSecondEffect: x-msgId and x-timestamp are outside what
// x-sign covers, so a captured message could be re-sent under a new msgId
// and a fresh time. The inbox keeps one notification per signed data, so
// the replay is acknowledged and changes nothing.
func TestReplayedData_NoSecondEffect(t *testing.T) {
	t.Parallel()
	r := newRig(t, nil, nil)
	ctx := waitCtx(t)
	const passed = `{"mini_app_id":"ws-replay","mini_app_version":"1"}`
	const rejected = `{"mini_app_id":"ws-replay","mini_app_version":"1","audit_reason":"no"}`
	now := time.Now().UnixMilli()
	for _, m := range []struct{ api, content, id string }{
		{notify.MethodAuditPassed, passed, "ws-a"},
		{notify.MethodAuditRejected, rejected, "ws-b"},
		{notify.MethodAuditPassed, passed, "ws-c"}, // the first, replayed later
	} {
		now += 1000
		if err := r.sim.Deliver(testkit.AppID, m.api, m.content, m.id, now); err != nil {
			t.Fatal(err)
		}
		if _, err := r.sim.WaitAck(ctx, testkit.AppID, m.id, msgchannel.AckSuccess); err != nil {
			t.Fatal(err)
		}
	}
	m, err := r.db.MiniApp(ctx, "ws-replay")
	if err != nil || m.AuditStatus != notify.AuditRejected {
		t.Fatalf("%+v %v", m, err)
	}
	if _, err := r.db.Notification(ctx, testkit.AppID, "ws-c"); notify.ErrorCode(err) != notify.ENOTFOUND {
		t.Fatalf("the replay was stored: %v", err)
	}
}

// TestFutureTimestamp_AckFail: a message dated ahead of the gateway's clock
// is not trusted: FAIL, nothing stored (Alipay delivers it again).
func TestFutureTimestamp_AckFail(t *testing.T) {
	t.Parallel()
	r := newRig(t, nil, nil)
	ctx := waitCtx(t)
	if err := r.sim.Deliver(testkit.AppID, notify.MethodAuditPassed, `{"mini_app_id":"ws-future"}`, "ws-f", time.Now().Add(time.Hour).UnixMilli()); err != nil {
		t.Fatal(err)
	}
	if _, err := r.sim.WaitAck(ctx, testkit.AppID, "ws-f", msgchannel.AckFail); err != nil {
		t.Fatal(err)
	}
	if _, err := r.db.Notification(ctx, testkit.AppID, "ws-f"); notify.ErrorCode(err) != notify.ENOTFOUND {
		t.Fatalf("stored: %v", err)
	}
}
