package loadtest

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/alipay-notify-gateway/gateway/internal/alipay"
	"github.com/alipay-notify-gateway/gateway/internal/notify"
	"github.com/alipay-notify-gateway/gateway/internal/samples"
	"github.com/alipay-notify-gateway/gateway/internal/testkit"
)

func testGenerator(t *testing.T, mix string) *Generator {
	t.Helper()
	m, err := MixOf(mix)
	if err != nil {
		t.Fatalf("MixOf(%q): %v", mix, err)
	}
	return &Generator{AppID: testkit.AppID, Prefix: "test-run", Seed: 42, TSBase: 1_700_000_000_000, Entities: 5, Mix: m, Key: testkit.AlipayKey()}
}

func testVerifier(t *testing.T, g *Generator) *alipay.Verifier {
	t.Helper()
	return testkit.Verifier(t, &alipay.App{ID: g.AppID, Keys: []alipay.Key{{Pub: &g.Key.PublicKey}}})
}

// TestBodyVerifies: every generated body verifies as the gateway verifies
// it, carries its own notify_id, method and timestamp, and its handler can
// use it (no notification would be stored as failed).
func TestBodyVerifies(t *testing.T) {
	t.Parallel()
	g := testGenerator(t, "")
	v := testVerifier(t, g)
	registry := testkit.Registry(t)
	const n = 60
	seenMethods := map[string]bool{}
	seenIDs := map[string]bool{}
	for i := range n {
		body, err := g.Body(i)
		if err != nil {
			t.Fatalf("Body(%d): %v", i, err)
		}
		got, m, err := v.Notification(body, notify.ChannelHTTP, time.Now())
		if err != nil {
			t.Fatalf("Body(%d) does not verify: %v\n%s", i, err, body)
		}
		if m.Form.Name != alipay.FormV1.Name {
			t.Errorf("Body(%d) verified with form %s, want v1", i, m.Form.Name)
		}
		if got.NotifyID != g.NotifyID(i) || got.AppID != testkit.AppID || got.Method != g.Method(i) {
			t.Errorf("Body(%d): notify_id %q app_id %q method %q, want %q %q %q",
				i, got.NotifyID, got.AppID, got.Method, g.NotifyID(i), testkit.AppID, g.Method(i))
		}
		if got.Failure != "" {
			t.Errorf("Body(%d): failure %q", i, got.Failure)
		}
		wantTS := g.TSBase + int64(i)
		if got.Method == notify.MethodAuthGranted {
			wantTS = wantTS / 1000 * 1000 // notify_time has seconds only
		}
		if got.UTCTimestamp != wantTS {
			t.Errorf("Body(%d) (%s): timestamp %d, want %d", i, got.Method, got.UTCTimestamp, wantTS)
		}
		h, ok := registry.Handler(got.Method)
		if !ok {
			t.Fatalf("Body(%d): no handler for %s", i, got.Method)
		}
		if _, err := h(got); err != nil {
			t.Errorf("Body(%d) (%s): the handler refuses it: %v", i, got.Method, err)
		}
		if seenIDs[got.NotifyID] {
			t.Errorf("notify_id %s generated twice", got.NotifyID)
		}
		seenIDs[got.NotifyID] = true
		seenMethods[got.Method] = true
	}
	if len(seenMethods) != len(samples.All()) {
		t.Errorf("%d notifications cover %d methods, want all %d samples' methods", n, len(seenMethods), len(samples.All()))
	}
}

// TestBodyDeterministic: the same flags make the same bytes (a resend, or
// one load sent to two replicas); another prefix changes the notify_ids but
// keeps the entities, so pairs of runs can race on the same mini-apps.
func TestBodyDeterministic(t *testing.T) {
	t.Parallel()
	a, b := testGenerator(t, ""), testGenerator(t, "")
	for i := range 10 {
		ba, err := a.Body(i)
		if err != nil {
			t.Fatal(err)
		}
		bb, err := b.Body(i)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(ba, bb) {
			t.Fatalf("Body(%d) differs between two identical generators", i)
		}
	}

	passed, rejected := testGenerator(t, "audit-passed"), testGenerator(t, "audit-rejected")
	passed.Prefix, rejected.Prefix = "pair-a", "pair-b"
	passed.TSBase++ // A's is newer
	for i := range 10 {
		fa, err := passed.Form(i)
		if err != nil {
			t.Fatal(err)
		}
		fb, err := rejected.Form(i)
		if err != nil {
			t.Fatal(err)
		}
		if fa[alipay.ParamNotifyID] == fb[alipay.ParamNotifyID] {
			t.Errorf("pair %d: both runs use notify_id %s", i, fa[alipay.ParamNotifyID])
		}
		if ma, mb := miniAppID(t, fa), miniAppID(t, fb); ma != mb || ma == "" {
			t.Errorf("pair %d: mini_app_id %q and %q, want the same", i, ma, mb)
		}
		if fa[alipay.ParamTimestamp] <= fb[alipay.ParamTimestamp] {
			t.Errorf("pair %d: utc_timestamp %s not after %s", i, fa[alipay.ParamTimestamp], fb[alipay.ParamTimestamp])
		}
	}

	// Entity i%Entities: notifications 0 and 5 are about one mini-app, 0 and 1 not.
	g := testGenerator(t, "audit-passed")
	f0, _ := g.Form(0)
	f1, _ := g.Form(1)
	f5, _ := g.Form(5)
	if miniAppID(t, f0) != miniAppID(t, f5) || miniAppID(t, f0) == miniAppID(t, f1) {
		t.Errorf("mini_app_ids %s %s %s: want 0 and 5 equal, 0 and 1 different", miniAppID(t, f0), miniAppID(t, f1), miniAppID(t, f5))
	}
}

func miniAppID(t *testing.T, f alipay.Form) string {
	t.Helper()
	var biz struct {
		MiniAppID string `json:"mini_app_id"`
	}
	if err := json.Unmarshal([]byte(f[alipay.ParamBizContent]), &biz); err != nil {
		t.Fatalf("biz_content: %v", err)
	}
	return biz.MiniAppID
}

func TestMixOf(t *testing.T) {
	t.Parallel()
	all, err := MixOf("")
	if err != nil || len(all) != len(samples.All()) {
		t.Errorf("MixOf(\"\") = %d samples, %v; want all", len(all), err)
	}
	two, err := MixOf("audit-passed, auth-granted")
	if err != nil || len(two) != 2 || two[1].Method != notify.MethodAuthGranted {
		t.Errorf("MixOf(two) = %v, %v", two, err)
	}
	if _, err := MixOf("audit-passed,nope"); err == nil || !strings.Contains(err.Error(), `"nope"`) {
		t.Errorf("MixOf(unknown) error %v, want it to name the sample", err)
	}
}
