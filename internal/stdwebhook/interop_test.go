package stdwebhook_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/alipay-notify-gateway/gateway/internal/stdwebhook"
)

// whcheckDir holds the official Standard Webhooks JavaScript library, pinned
// (see its package.json), and check.js around its Webhook.
const whcheckDir = "../../deploy/dev/whcheck"

type jsVerify struct {
	Secret  int               `json:"secret"`
	Headers map[string]string `json:"headers"`
	Body    string            `json:"body"`
}

type jsSign struct {
	Secret    int    `json:"secret"`
	ID        string `json:"id"`
	Timestamp int64  `json:"timestamp"`
	Body      string `json:"body"`
}

type jsInput struct {
	Secrets []string   `json:"secrets"`
	Verify  []jsVerify `json:"verify"`
	Sign    []jsSign   `json:"sign"`
}

type jsOutput struct {
	Verify []string `json:"verify"`
	Sign   []string `json:"sign"`
}

// officialJS returns a function that runs check.js, or skips the test,
// saying why, when node or the library is not installed (make test installs
// it with npm when npm is there).
func officialJS(t *testing.T) func(t *testing.T, in jsInput) jsOutput {
	t.Helper()
	node, err := exec.LookPath("node")
	if err != nil {
		t.Skip("SKIPPED: node is not installed: the interoperation with the official Standard Webhooks library is not checked")
	}
	if _, err := os.Stat(filepath.Join(whcheckDir, "node_modules", "standardwebhooks")); err != nil {
		t.Skip("SKIPPED: the official Standard Webhooks library is not installed (npm ci --prefix deploy/dev/whcheck): the interoperation with it is not checked")
	}
	return func(t *testing.T, in jsInput) jsOutput {
		t.Helper()
		data, _ := json.Marshal(in)
		cmd := exec.Command(node, filepath.Join(whcheckDir, "check.js"))
		cmd.Stdin = bytes.NewReader(data)
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("check.js: %v\n%s", err, stderr.String())
		}
		var got jsOutput
		if err := json.Unmarshal(out, &got); err != nil || len(got.Verify) != len(in.Verify) || len(got.Sign) != len(in.Sign) {
			t.Fatalf("check.js answered %q (%v)", out, err)
		}
		return got
	}
}

// interopBodies are event bodies as the gateway sends them, and awkward
// ones: non-ASCII text, escapes, a dot-laden body, an empty object, a long
// one.
func interopBodies() []string {
	return []string{
		`{"id":"evt_42","type":"authorization.granted","timestamp":"2026-12-01T10:00:00.123Z","app_id":"2021000000000001","notify_id":"2026120100222000000000000001","occurred_at":"2026-12-01T09:59:59Z","data":{"merchant":"2088000000000001"}}`,
		`{"id":"evt_43","type":"mini_app.audit.rejected","data":{"reason":"张三的试用小程序 🙂 \"quoted\" back\\slash\nline"}}`,
		`{"a.b":"1.2.3","url":"https://m.example.com/p?a=1&b=%E4%B8%AD"}`,
		`{}`,
		`{"data":"` + strings.Repeat("长", 5000) + `"}`,
	}
}

// headerMap flattens h into the lower-case names a Node server hands over.
func headerMap(h http.Header) map[string]string {
	m := map[string]string{}
	for name := range h {
		m[strings.ToLower(name)] = h.Get(name)
	}
	return m
}

// TestVerify_AgreesWithOfficialJS holds the package to the official
// JavaScript library (standardwebhooks, run as it is): what Sign signs it
// verifies, with each secret of a rotation, and what it signs Verify
// verifies; both refuse the same tampered webhooks.
func TestVerify_AgreesWithOfficialJS(t *testing.T) {
	t.Parallel()
	js := officialJS(t)
	cur, err := stdwebhook.NewSecret()
	if err != nil {
		t.Fatal(err)
	}
	old := vectors["Libraries"].secret
	keys := [][]byte{mustKey(t, cur), mustKey(t, old)}
	other := vectors["Rust"].secret
	now := time.Now()

	t.Run("OKOursVerifiedByJS", func(t *testing.T) {
		t.Parallel()
		in := jsInput{Secrets: []string{cur, old, other}}
		for i, body := range interopBodies() {
			h := http.Header{}
			stdwebhook.SetHeaders(h, fmt.Sprintf("evt_%d", i), now, []byte(body), keys...)
			for secret := range 2 {
				in.Verify = append(in.Verify, jsVerify{Secret: secret, Headers: headerMap(h), Body: body})
			}
		}
		for i, got := range js(t, in).Verify {
			if got != "ok" {
				t.Errorf("case %d (secret %d): the official library says %s", i/2, i%2, got)
			}
		}
	})
	t.Run("OKJSVerifiedByOurs", func(t *testing.T) {
		t.Parallel()
		in := jsInput{Secrets: []string{cur, old}}
		for i, body := range interopBodies() {
			in.Sign = append(in.Sign, jsSign{Secret: i % 2, ID: fmt.Sprintf("evt_%d", i), Timestamp: now.Unix(), Body: body})
		}
		// The vector too, signed at its own time.
		v := vectors["Libraries"]
		in.Sign = append(in.Sign, jsSign{Secret: 1, ID: v.id, Timestamp: v.ts, Body: v.body})
		out := js(t, in)
		if got := out.Sign[len(out.Sign)-1]; got != v.want {
			t.Errorf("the official library signs the vector %s, want %s", got, v.want)
		}
		for i, c := range in.Sign {
			h := http.Header{}
			h.Set(stdwebhook.HeaderID, c.ID)
			h.Set(stdwebhook.HeaderTimestamp, strconv.FormatInt(c.Timestamp, 10))
			h.Set(stdwebhook.HeaderSignature, out.Sign[i])
			if err := stdwebhook.Verify(h, []byte(c.Body), time.Unix(c.Timestamp, 0), keys...); err != nil {
				t.Errorf("case %d: %v", i, err)
			}
			if want := stdwebhook.Sign(c.ID, time.Unix(c.Timestamp, 0), []byte(c.Body), keys[c.Secret]); out.Sign[i] != want {
				t.Errorf("case %d: the official library signs %s, Sign %s", i, out.Sign[i], want)
			}
		}
	})
	t.Run("ErrTamperedRefusedByBoth", func(t *testing.T) {
		t.Parallel()
		body := interopBodies()[0]
		type tamper struct {
			name string
			want error
			do   func(h http.Header, body *string)
		}
		tampers := []tamper{
			{"Body", stdwebhook.ErrNoMatchingSignature, func(_ http.Header, b *string) { *b = strings.Replace(*b, "evt_42", "evt_43", 1) }},
			{"ID", stdwebhook.ErrNoMatchingSignature, func(h http.Header, _ *string) { h.Set("webhook-id", "evt_43") }},
			{"Timestamp", stdwebhook.ErrNoMatchingSignature, func(h http.Header, _ *string) {
				h.Set("webhook-timestamp", strconv.FormatInt(now.Unix()+1, 10))
			}},
			{"Signature", stdwebhook.ErrNoMatchingSignature, func(h http.Header, _ *string) { h.Set("webhook-signature", otherSig) }},
			{"OtherVersion", stdwebhook.ErrNoMatchingSignature, func(h http.Header, _ *string) {
				h.Set("webhook-signature", "v2,"+strings.TrimPrefix(h.Get("webhook-signature"), "v1,"))
			}},
			{"TooOld", stdwebhook.ErrTooOld, func(h http.Header, _ *string) {
				h.Set("webhook-timestamp", strconv.FormatInt(now.Add(-stdwebhook.Tolerance-time.Minute).Unix(), 10))
			}},
			{"TooNew", stdwebhook.ErrTooNew, func(h http.Header, _ *string) {
				h.Set("webhook-timestamp", strconv.FormatInt(now.Add(stdwebhook.Tolerance+time.Minute).Unix(), 10))
			}},
			{"NoID", stdwebhook.ErrMissingHeaders, func(h http.Header, _ *string) { h.Del("webhook-id") }},
		}
		in := jsInput{Secrets: []string{cur}}
		var bodies []string
		var headers []http.Header
		for _, tc := range tampers {
			h, b := http.Header{}, body
			stdwebhook.SetHeaders(h, "evt_42", now, []byte(body), keys[0])
			tc.do(h, &b)
			headers, bodies = append(headers, h), append(bodies, b)
			in.Verify = append(in.Verify, jsVerify{Headers: headerMap(h), Body: b})
		}
		out := js(t, in)
		for i, tc := range tampers {
			if out.Verify[i] == "ok" {
				t.Errorf("%s: the official library accepts it", tc.name)
			}
			if err := stdwebhook.Verify(headers[i], []byte(bodies[i]), now, keys[0]); !errors.Is(err, tc.want) {
				t.Errorf("%s: Verify: %v, want %v (the official library: %s)", tc.name, err, tc.want, out.Verify[i])
			}
		}
	})
}
