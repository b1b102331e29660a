package testkit_test

import (
	"bytes"
	"encoding/base64"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/alipay-notify-gateway/gateway/internal/alipay"
	"github.com/alipay-notify-gateway/gateway/internal/notify"
	"github.com/alipay-notify-gateway/gateway/internal/samples"
	"github.com/alipay-notify-gateway/gateway/internal/testkit"
)

// TestApps: what each app's keys sign verifies for it, and nothing else.
func TestApps(t *testing.T) {
	t.Parallel()
	v := testkit.Verifier(t, testkit.KeyApp(), testkit.CertApp(), testkit.OtherApp())
	pki := testkit.PKI()
	for _, tc := range []struct {
		name string
		app  string
		sign alipay.Form
		ok   bool
	}{
		{"Key", testkit.AppID, testkit.Sign(t, testkit.Sample(t, "audit-passed", testkit.AppID), testkit.AlipayKey(), alipay.FormV2), true},
		{"Other", testkit.OtherAppID, testkit.Sign(t, testkit.Sample(t, "audit-passed", testkit.OtherAppID), testkit.AlipayKey(), alipay.FormV1), true},
		{"Cert", testkit.CertAppID, testkit.Sign(t, testkit.Sample(t, "audit-passed", testkit.CertAppID), pki.Alipay.Key, alipay.FormV1), true},
		{"Rotated", testkit.CertAppID, testkit.Sign(t, testkit.Sample(t, "audit-passed", testkit.CertAppID), pki.Rotated.Key, alipay.FormV1), true},
		{"ErrForged", testkit.AppID, testkit.Sign(t, testkit.Sample(t, "audit-passed", testkit.AppID), testkit.OtherKey(), alipay.FormV1), false},
		{"ErrAppKey", testkit.AppID, testkit.Sign(t, testkit.Sample(t, "audit-passed", testkit.AppID), testkit.AppKey(), alipay.FormV1), false},
		{"ErrRogue", testkit.CertAppID, testkit.Sign(t, testkit.Sample(t, "audit-passed", testkit.CertAppID), pki.Rogue.Key, alipay.FormV1), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := v.Verify(tc.sign)
			if (err == nil) != tc.ok || tc.sign["app_id"] != tc.app {
				t.Fatalf("verified %v (%v), want %v", err == nil, err, tc.ok)
			}
		})
	}
	sha1 := testkit.SignSHA1(t, testkit.Sample(t, "audit-passed", testkit.AppID), testkit.AlipayKey(), alipay.FormV1)
	if _, err := v.Verify(sha1); err == nil {
		t.Fatal("a SHA1 signature verifies as RSA2")
	}
	sha1["sign_type"] = "RSA"
	if _, err := testkit.Verifier(t, &alipay.App{ID: testkit.AppID, Keys: testkit.KeyApp().Keys, AllowRSA1: true}).Verify(sha1); err != nil {
		t.Fatalf("SHA1 with RSA1 allowed: %v", err)
	}
	if a := testkit.CertApp(); a.RootCertSN == "" || a.AppCertSN != alipay.CertSN(pki.App.Cert) || a.PrivateKey != pki.App.Key {
		t.Fatalf("%+v", a)
	}
}

// TestForms: every sample, signed to a body, is the notification NoteOf
// says, and the registry decides it.
func TestForms(t *testing.T) {
	t.Parallel()
	v := testkit.Verifier(t)
	seen := map[string]bool{}
	for _, s := range samples.All() {
		f := testkit.Sample(t, s.Name, testkit.AppID)
		if seen[f["notify_id"]] || !alipay.ValidNotifyID(f["notify_id"]) {
			t.Fatalf("notify_id %q: used twice, or not a notify_id", f["notify_id"])
		}
		seen[f["notify_id"]] = true
		got, _, err := v.Notification([]byte(testkit.Body(t, f, testkit.AlipayKey())), notify.ChannelHTTP, time.Now())
		if err != nil {
			t.Fatalf("%s: %v", s.Name, err)
		}
		want := testkit.NoteOf(f)
		if got.AppID != want.AppID || got.NotifyID != want.NotifyID || got.Method != want.Method || got.UTCTimestamp != want.UTCTimestamp ||
			got.BizContent != want.BizContent || fmt.Sprint(got.Secrets) != fmt.Sprint(want.Secrets) || got.Params["biz_content"] != want.Params["biz_content"] {
			t.Fatalf("%s: the verifier's\n%+v\nNoteOf's\n%+v", s.Name, got, want)
		}
		if d := testkit.Decide(t, want); d.Change == nil {
			t.Fatalf("%s: %+v", s.Name, d)
		}
	}
	n := testkit.Note(notify.MethodAuditPassed, `{"mini_app_id":"1"}`, 42)
	if n.AppID != testkit.AppID || n.UTCTimestamp != 42 || n.Method != notify.MethodAuditPassed || n.NotifyID == "" {
		t.Fatalf("%+v", n)
	}
}

func TestTokenKeys(t *testing.T) {
	t.Parallel()
	for b64, key := range map[string][]byte{testkit.TokenKeyBase64: testkit.TokenKey, testkit.OtherTokenKeyBase64: testkit.OtherTokenKey} {
		if got, err := base64.StdEncoding.DecodeString(b64); err != nil || !bytes.Equal(got, key) {
			t.Fatalf("%s is not %s", b64, key)
		}
	}
	sealed := testkit.LegacySeal(t, testkit.TokenKey, "secret", "owner")
	if got, err := testkit.SealerOf(t, testkit.OtherTokenKey, testkit.TokenKey).Open(sealed, "owner"); err != nil || got != "secret" {
		t.Fatalf("%q %v", got, err)
	}
}

func TestHelpers(t *testing.T) {
	t.Parallel()
	var logs testkit.LogBuffer
	seen := make([]bool, 8)
	testkit.Concurrently(8, func(i int) {
		l := testkit.Logger(t, &logs)
		l.Info().Int("i", i).Msg("line")
		seen[i] = true
	})
	if n := strings.Count(logs.String(), `"message":"line"`); n != 8 || slices.Contains(seen, false) {
		t.Fatalf("%d lines: %s", n, logs.String())
	}
	start := time.Now()
	testkit.Eventually(t, 5*time.Second, func() bool { return time.Since(start) > 30*time.Millisecond })
	if testkit.Poll(30*time.Millisecond, func() bool { return false }) {
		t.Fatal("Poll of a condition that never holds")
	}
}
