package alipay_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/alipay-notify-gateway/gateway/internal/alipay"
	"github.com/alipay-notify-gateway/gateway/internal/devpki"
	"github.com/alipay-notify-gateway/gateway/internal/notify"
	"github.com/alipay-notify-gateway/gateway/internal/testkit"
)

// nodeSDKDir holds the official Alipay Node.js SDK, pinned (see its
// package.json), and check.js around its checkNotifySignV2.
const nodeSDKDir = "../../deploy/dev/nodesdk"

// officialSDK returns a function that asks the official Node.js SDK which
// forms verify with key, or skips the test, saying why, when node or the SDK
// is not installed (make test installs it with npm when npm is there).
func officialSDK(t *testing.T) func(forms []alipay.Form) []bool {
	t.Helper()
	node, err := exec.LookPath("node")
	if err != nil {
		t.Skip("SKIPPED: node is not installed: the agreement with Alipay's official Node.js SDK is not checked")
	}
	if _, err := os.Stat(filepath.Join(nodeSDKDir, "node_modules", "alipay-sdk")); err != nil {
		t.Skipf("SKIPPED: the official Node.js SDK is not installed (npm ci --prefix deploy/dev/nodesdk): the agreement with it is not checked")
	}
	pub, err := devpki.PublicKeyBase64(&testkit.AlipayKey().PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	return func(forms []alipay.Form) []bool {
		t.Helper()
		in, _ := json.Marshal(map[string]any{"publicKey": pub, "forms": forms})
		cmd := exec.Command(node, filepath.Join(nodeSDKDir, "check.js"))
		cmd.Stdin = bytes.NewReader(in)
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("check.js: %v\n%s", err, stderr.String())
		}
		var got []bool
		if err := json.Unmarshal(out, &got); err != nil || len(got) != len(forms) {
			t.Fatalf("check.js answered %q (%v)", out, err)
		}
		return got
	}
}

// awkward returns genuine notification i of a deterministic corpus of the
// shapes that break naive verifiers: both content forms (V1, V2), both
// styles (msg_method, and notify_type with notify_time), empty values, keys
// that are other keys plus a character (a, a1, a_b), values with spaces at
// either end, '+', '%', '&', '=', quotes, backslashes, line breaks, Chinese
// and emoji, a URL with a query in biz_content, and long values. The
// identifiers have Alipay's shapes; the free text has anything.
func awkward(i int) (alipay.Form, alipay.ContentForm) {
	r := rand.New(rand.NewPCG(7, uint64(i)))
	pick := func(vs ...string) string { return vs[r.IntN(len(vs))] }
	text := func() string {
		return pick("", " ", "  lead", "trail  ", "a b", "1+1=2", "100%", "%41%zz", "a&b=c&d", `q"uote`, `back\slash`,
			"line\nbreak", "tab\there", "中文", "张三的试用小程序", "🙂", "https://m.example.com/p?a=1&b=%E4%B8%AD", strings.Repeat("长", 700))
	}
	now := time.Now().UnixMilli()
	biz := map[string]any{"mini_app_id": fmt.Sprint(2021000000000000 + i), "note": text(), "url": text(), "nested": map[string]any{"v": text()}}
	bizJSON, _ := json.Marshal(biz)
	f := alipay.Form{
		"app_id":      testkit.AppID,
		"notify_id":   pick(fmt.Sprintf("2026120100222%021d", i), fmt.Sprintf("157035bf84dc39b8a4ea9fb397fc%06dx", i), fmt.Sprintf("n-%d_x.%d", i, i)),
		"charset":     pick("UTF-8", "utf-8"),
		"sign_type":   "RSA2",
		"biz_content": string(bizJSON),
	}
	if r.IntN(4) == 0 {
		f["notify_type"] = "open_app_auth_notify"
		f["notify_time"] = time.UnixMilli(now).In(alipay.ChinaTime).Format(time.DateTime)
		f["version"] = pick("1.0", "")
		f["status"] = "execute_auth"
	} else {
		f["msg_method"] = pick("alipay.open.mini.version.audit.passed", "alipay.open.mini.merchant.confirmed", "alipay.open.app.x_y.changed")
		f["utc_timestamp"] = fmt.Sprint(now - int64(r.IntN(86400000)))
		f["version"] = "1.1"
	}
	for range r.IntN(6) {
		f[pick("a", "a1", "a_b", "ab", "z", "zz", "msg_uid", "msg_type", "x9_y")] = text()
	}
	if r.IntN(5) == 0 {
		f["encrypt_type"] = "" // present and empty: not encrypted, still signed
	}
	form := alipay.FormV1
	if r.IntN(2) == 0 {
		form = alipay.FormV2
	}
	return f, form
}

// TestVerifier_AgreesWithOfficialSDK holds the gateway's verification to
// Alipay's official Node.js SDK (alipay-sdk, run as it is): on 200 awkward
// genuine notifications both accept every one, on the same tampered both
// refuse every one, and on the folding replays the gateway refuses what the
// SDK, which re-adds a missing sign_type and tries both content forms,
// accepts (docs/signed-content.md).
func TestVerifier_AgreesWithOfficialSDK(t *testing.T) {
	t.Parallel()
	sdk := officialSDK(t)
	v := keyVerifier(t)
	now := time.Now()
	var genuine, tampered []alipay.Form
	for i := range 200 {
		f, form := awkward(i)
		s := testkit.Sign(t, f, testkit.AlipayKey(), form)
		// The SDK and the gateway both get the form as the body decodes.
		parsed, err := alipay.ParseForm([]byte(s.Encode()))
		if err != nil {
			t.Fatalf("%d: %v", i, err)
		}
		genuine = append(genuine, parsed)
		bad := copyOf(parsed)
		bad["biz_content"] = strings.Replace(bad["biz_content"], `"mini_app_id":"`, `"mini_app_id":"9`, 1)
		tampered = append(tampered, bad)
	}
	t.Run("OK", func(t *testing.T) {
		for i, ok := range sdk(genuine) {
			if !ok {
				t.Errorf("%d: the official SDK refuses a genuine notification: %v", i, genuine[i])
			}
			if _, _, err := v.Notification([]byte(genuine[i].Encode()), notify.ChannelHTTP, now); err != nil {
				t.Errorf("%d: the gateway refuses a genuine notification: %v (%v)", i, err, genuine[i])
			}
		}
	})
	t.Run("ErrTampered", func(t *testing.T) {
		for i, ok := range sdk(tampered) {
			_, _, err := v.Notification([]byte(tampered[i].Encode()), notify.ChannelHTTP, now)
			if ok || notify.ErrorCode(err) != notify.EUNVERIFIED {
				t.Errorf("%d: tampered: the SDK says %v, the gateway %v", i, ok, err)
			}
		}
	})
	t.Run("ErrFoldedStricterThanSDK", func(t *testing.T) {
		var folded []alipay.Form
		for i, f := range genuine {
			if _, form := awkward(i); form != alipay.FormV2 {
				continue
			}
			// The key just before sign_type in the V2 string takes
			// "&sign_type=RSA2", and sign_type goes.
			keys := make([]string, 0, len(f))
			for k := range f {
				if k != "sign" {
					keys = append(keys, k)
				}
			}
			before := ""
			for _, k := range keys {
				if k < "sign_type" && k > before {
					before = k
				}
			}
			g := copyOf(f)
			g[before] += "&sign_type=" + g["sign_type"]
			delete(g, "sign_type")
			folded = append(folded, g)
		}
		for i, ok := range sdk(folded) {
			if !ok {
				t.Errorf("%d: the official SDK refuses a folded replay: it got stricter (update docs/signed-content.md)", i)
			}
			if _, _, err := v.Notification([]byte(folded[i].Encode()), notify.ChannelHTTP, now); err == nil {
				t.Errorf("%d: the gateway accepts a folded replay: %v", i, folded[i])
			}
		}
	})
}

func copyOf(f alipay.Form) alipay.Form {
	c := make(alipay.Form, len(f))
	for k, v := range f {
		c[k] = v
	}
	return c
}
