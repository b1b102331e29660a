package alipay_test

import (
	"bytes"
	"crypto/sha256"
	"fmt"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/alipay-notify-gateway/gateway/internal/alipay"
	"github.com/alipay-notify-gateway/gateway/internal/notify"
	"github.com/alipay-notify-gateway/gateway/internal/testkit"
)

// refold re-sends a signed form as a folding replay would: without
// sign_type, and with "&sign_type=<its value>" folded into the value of
// the key that sorts just before it, so that the V1 string of the result is
// the V2 string of f, byte for byte.
func refold(t *testing.T, f alipay.Form, into string) alipay.Form {
	t.Helper()
	out := alipay.Form{}
	for k, v := range f {
		out[k] = v
	}
	out[into] += "&sign_type=" + out["sign_type"]
	delete(out, "sign_type")
	if !bytes.Equal(alipay.SignContent(out, alipay.FormV1), alipay.SignContent(f, alipay.FormV2)) {
		t.Fatalf("%s is not the key before sign_type: the refolded form does not give the same signed string", into)
	}
	return out
}

// TestVerifier_FoldingReplay shows the class of replays through the
// unescaped signed string closed: a V2-signed notification re-sent with
// sign_type folded into the value of its neighbour gives the same signed
// string, and would verify as a new notify_id.
func TestVerifier_FoldingReplay(t *testing.T) {
	t.Parallel()
	v := keyVerifier(t)
	now := time.Now()
	body := func(f alipay.Form) []byte { return []byte(f.Encode()) }
	t.Run("OK", func(t *testing.T) {
		// The genuine V2 notification verifies, and its digest is the
		// SHA-256 of the signed string.
		genuine := testkit.Sign(t, baseForm(t), testkit.AlipayKey(), alipay.FormV2)
		_, m, err := v.Notification(body(genuine), notify.ChannelHTTP, now)
		if err != nil || m.Form != alipay.FormV2 || m.Digest != sha256.Sum256(alipay.SignContent(genuine, alipay.FormV2)) {
			t.Fatalf("m=%+v err=%v", m, err)
		}
	})
	t.Run("ErrNotifyIDFolded", func(t *testing.T) {
		genuine := testkit.Sign(t, baseForm(t), testkit.AlipayKey(), alipay.FormV2)
		_, _, err := v.Notification(body(refold(t, genuine, "notify_id")), notify.ChannelHTTP, now)
		wantCode(t, err, notify.EINVALID, "bad_parameter")
	})
	t.Run("ErrNotifyIDFoldedSignTypeKept", func(t *testing.T) {
		f := refold(t, testkit.Sign(t, baseForm(t), testkit.AlipayKey(), alipay.FormV2), "notify_id")
		f["sign_type"] = "RSA2"
		_, _, err := v.Notification(body(f), notify.ChannelHTTP, now)
		wantCode(t, err, notify.EINVALID, "bad_parameter")
	})
	t.Run("ErrOlderStyleFolded", func(t *testing.T) {
		// The authorization notification: notify_type sorts just before
		// sign_type; with no notify_type, notify_time does.
		f := alipay.Form{"notify_id": "g-1", "notify_type": "open_app_auth_notify", "notify_time": "2018-01-24 20:40:22",
			"app_id": testkit.AppID, "sign_type": "RSA2", "biz_content": `{}`, "charset": "utf-8", "version": "1.0"}
		for _, into := range []string{"notify_type", "notify_time"} {
			g := testkit.Sign(t, f, testkit.AlipayKey(), alipay.FormV2)
			if into == "notify_time" {
				delete(f, "notify_type")
				f["msg_method"] = "alipay.open.x.y"
				g = testkit.Sign(t, f, testkit.AlipayKey(), alipay.FormV2)
			}
			folded := refold(t, g, into)
			folded["sign_type"] = "RSA2"
			_, _, err := v.Notification(body(folded), notify.ChannelHTTP, now)
			wantCode(t, err, notify.EINVALID, "bad_parameter")
		}
	})
	t.Run("ErrV1NeighboursFolded", func(t *testing.T) {
		// In the V1 string, utc_timestamp and version are neighbours: one
		// parameter folded into the other gives the same string.
		genuine := testkit.Sign(t, baseForm(t), testkit.AlipayKey(), alipay.FormV1)
		folded := alipay.Form{}
		for k, val := range genuine {
			folded[k] = val
		}
		folded["utc_timestamp"] += "&version=" + folded["version"]
		delete(folded, "version")
		if !bytes.Equal(alipay.SignContent(folded, alipay.FormV1), alipay.SignContent(genuine, alipay.FormV1)) {
			t.Fatal("not the same signed string")
		}
		_, _, err := v.Notification(body(folded), notify.ChannelHTTP, now)
		wantCode(t, err, notify.EINVALID, "bad_parameter")
	})
	t.Run("ErrNameFolded", func(t *testing.T) {
		// '&' or '=' in a parameter name (URL-encoded in the body).
		genuine := testkit.Sign(t, baseForm(t), testkit.AlipayKey(), alipay.FormV1)
		raw := strings.Replace(genuine.Encode(), "version=1.1", url.QueryEscape("version=1.1&x")+"=y", 1)
		_, _, err := v.Notification([]byte(raw), notify.ChannelHTTP, now)
		wantCode(t, err, notify.EINVALID, "bad_parameter")
	})
	t.Run("SameDigestAcrossForms", func(t *testing.T) {
		// Whatever split of the signed string verifies, its digest is the
		// one the inbox keys replays on: the refolded twin (were it taken)
		// has the digest of the genuine notification.
		genuine := testkit.Sign(t, baseForm(t), testkit.AlipayKey(), alipay.FormV2)
		twin := refold(t, genuine, "notify_id")
		if sha256.Sum256(alipay.SignContent(twin, alipay.FormV1)) != sha256.Sum256(alipay.SignContent(genuine, alipay.FormV2)) {
			t.Fatal("digests differ")
		}
	})
}

func TestVerifier_Shapes(t *testing.T) {
	t.Parallel()
	v := keyVerifier(t)
	body := func(f alipay.Form) []byte {
		return []byte(testkit.Sign(t, f, testkit.AlipayKey(), alipay.FormV1).Encode())
	}
	for name, mut := range map[string]func(alipay.Form){
		"OlderStyleVersionEmpty": func(f alipay.Form) { f["version"] = "" },
		"NotifyIDOfDigits":       func(f alipay.Form) { f["notify_id"] = "2023061200222160714bd1bb5ee8ef0" },
		"NotifyIDOld":            func(f alipay.Form) { f["notify_id"] = "157035bf84dc39b8a4ea9fb397fc800lpm" },
		"CharsetLower":           func(f alipay.Form) { f["charset"] = "utf-8" },
		"UnknownParameter":       func(f alipay.Form) { f["msg_uid"] = "a=b&c" }, // free text may hold them
		"EncryptTypeEmpty":       func(f alipay.Form) { f["encrypt_type"] = "" },
	} {
		t.Run("OK/"+name, func(t *testing.T) {
			f := baseForm(t)
			mut(f)
			if _, _, err := v.Notification(body(f), notify.ChannelHTTP, time.Now()); err != nil {
				t.Fatal(err)
			}
		})
	}
	for name, mut := range map[string]func(alipay.Form){
		"ErrAppIDLetters":     func(f alipay.Form) { f["app_id"] = "2013x" },
		"ErrNotifyIDAmp":      func(f alipay.Form) { f["notify_id"] = "n-1&x" },
		"ErrNotifyIDEquals":   func(f alipay.Form) { f["notify_id"] = "n=1" },
		"ErrNotifyIDSpace":    func(f alipay.Form) { f["notify_id"] = "n 1" },
		"ErrNotifyIDTooLong":  func(f alipay.Form) { f["notify_id"] = strings.Repeat("n", 65) },
		"ErrMethodOneWord":    func(f alipay.Form) { f["msg_method"] = "alipay" },
		"ErrMethodUpper":      func(f alipay.Form) { f["msg_method"] = "alipay.Open.x" },
		"ErrNotifyTypeDotted": func(f alipay.Form) { f["notify_type"] = "a.b" },
		"ErrSignTypeLower":    func(f alipay.Form) { f["sign_type"] = "rsa2" },
		"ErrCharsetAmp":       func(f alipay.Form) { f["charset"] = "UTF-8&x=y" },
		"ErrVersionWord":      func(f alipay.Form) { f["version"] = "one" },
		"ErrTimestampAmp":     func(f alipay.Form) { f["utc_timestamp"] = "1516797622752&version=1.1" },
		"ErrNotifyTime":       func(f alipay.Form) { f["notify_time"] = "2018-01-24T20:40:22" },
		"ErrCertSN":           func(f alipay.Form) { f["alipay_cert_sn"] = "xyz" },
		"ErrEncryptType":      func(f alipay.Form) { f["encrypt_type"] = "AES&x" },
		"ErrUpperName":        func(f alipay.Form) { f["Notify_ID"] = "n" },
		"ErrLongName":         func(f alipay.Form) { f[strings.Repeat("k", 65)] = "" },
	} {
		t.Run(name, func(t *testing.T) {
			f := baseForm(t)
			mut(f)
			_, _, err := v.Notification(body(f), notify.ChannelHTTP, time.Now())
			wantCode(t, err, notify.EINVALID, "bad_parameter")
		})
	}
	t.Run("ErrNoSignType", func(t *testing.T) {
		f := baseForm(t)
		delete(f, "sign_type")
		_, _, err := v.Notification(body(f), notify.ChannelHTTP, time.Now())
		wantCode(t, err, notify.EINVALID, "missing_parameter")
	})
	t.Run("ErrTooManyParameters", func(t *testing.T) {
		// Thousands of empty parameters and a zero sign: refused before
		// anything is parsed.
		raw := testkit.Sign(t, baseForm(t), testkit.AlipayKey(), alipay.FormV1).Encode() + strings.Repeat("&e=", 10000)
		_, _, err := v.Notification([]byte(raw), notify.ChannelHTTP, time.Now())
		wantCode(t, err, notify.EINVALID, "too_many_parameters")
	})
	t.Run("ErrLongSign", func(t *testing.T) {
		f := testkit.Sign(t, baseForm(t), testkit.AlipayKey(), alipay.FormV1)
		f["sign"] = strings.Repeat("A", alipay.MaxSignLen+4)
		_, _, err := v.Notification([]byte(f.Encode()), notify.ChannelHTTP, time.Now())
		wantCode(t, err, notify.EUNVERIFIED, "bad_signature")
	})
}

func TestVerifier_FutureTimestamp(t *testing.T) {
	t.Parallel()
	v, err := alipay.NewVerifierWith(alipay.VerifierConfig{
		Apps:         []*alipay.App{testkit.KeyApp()},
		MaxClockSkew: 2 * time.Minute,
	})
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	at := func(d time.Duration) []byte {
		f := baseForm(t)
		f["utc_timestamp"] = fmt.Sprint(now.Add(d).UnixMilli())
		return []byte(testkit.Sign(t, f, testkit.AlipayKey(), alipay.FormV1).Encode())
	}
	t.Run("OK", func(t *testing.T) {
		for _, d := range []time.Duration{-24 * time.Hour, 0, 119 * time.Second} {
			if _, _, err := v.Notification(at(d), notify.ChannelHTTP, now); err != nil {
				t.Fatalf("%s: %v", d, err)
			}
		}
	})
	t.Run("ErrAhead", func(t *testing.T) {
		_, _, err := v.Notification(at(3*time.Minute), notify.ChannelHTTP, now)
		wantCode(t, err, notify.ETOOEARLY, "future_timestamp")
	})
	t.Run("Err2286", func(t *testing.T) {
		f := baseForm(t)
		f["utc_timestamp"] = "9999999999999"
		_, _, err := v.Notification([]byte(testkit.Sign(t, f, testkit.AlipayKey(), alipay.FormV1).Encode()), notify.ChannelHTTP, now)
		wantCode(t, err, notify.ETOOEARLY, "future_timestamp")
	})
	t.Run("ErrNotifyTimeAhead", func(t *testing.T) {
		f := alipay.Form{"notify_id": "g-1", "notify_type": "open_app_auth_notify",
			"notify_time": now.Add(time.Hour).In(alipay.ChinaTime).Format(time.DateTime),
			"app_id":      testkit.AppID, "sign_type": "RSA2", "biz_content": `{}`, "charset": "utf-8"}
		_, _, err := v.Notification([]byte(testkit.Sign(t, f, testkit.AlipayKey(), alipay.FormV1).Encode()), notify.ChannelHTTP, now)
		wantCode(t, err, notify.ETOOEARLY, "future_timestamp")
	})
	t.Run("ErrForgedAheadIsUnverified", func(t *testing.T) {
		// The time is trusted only once the signature is: a forgery is a
		// forgery, whatever its date.
		f, _ := alipay.ParseForm(at(time.Hour))
		f["biz_content"] = `{"mini_app_id":"1"}`
		_, _, err := v.Notification([]byte(f.Encode()), notify.ChannelHTTP, now)
		wantCode(t, err, notify.EUNVERIFIED, "bad_signature")
	})
}

func TestVerifier_CertValidity(t *testing.T) {
	t.Parallel()
	app := testkit.CertApp()                          // Keys: Alipay's cert, then Rotated
	app.ID = testkit.AppID                            // baseForm's app
	app.Keys[0].NotAfter = time.Now().Add(-time.Hour) // the first cert has expired since start-up
	v := keyVerifier(t, app)
	withSN := func(key int) alipay.Form {
		f := baseForm(t)
		f["alipay_cert_sn"] = app.Keys[key].SN
		k := testkit.PKI().Alipay.Key
		if key == 1 {
			k = testkit.PKI().Rotated.Key
		}
		return testkit.Sign(t, f, k, alipay.FormV1)
	}
	t.Run("OK", func(t *testing.T) {
		if _, err := v.Verify(withSN(1)); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("ErrExpiredBySN", func(t *testing.T) {
		_, err := v.Verify(withSN(0))
		wantCode(t, err, notify.EUNVERIFIED, "cert_expired")
	})
	t.Run("ErrExpiredNoSN", func(t *testing.T) {
		_, err := v.Verify(testkit.Sign(t, baseForm(t), testkit.PKI().Alipay.Key, alipay.FormV1))
		wantCode(t, err, notify.EUNVERIFIED, "bad_signature")
	})
}
