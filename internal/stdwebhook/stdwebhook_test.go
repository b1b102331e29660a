package stdwebhook_test

import (
	"errors"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/alipay-notify-gateway/gateway/internal/stdwebhook"
)

// vector is a signature from the official libraries' own tests.
type vector struct {
	secret, id string
	ts         int64
	body, want string
}

var vectors = map[string]vector{
	// libraries/go/webhook_test.go TestWebhookSign, and the same in
	// libraries/javascript/src/webhook.test.ts ("sign function works") and
	// the Python, Ruby, PHP, Java and C# tests.
	"Libraries": {
		secret: "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
		id:     "msg_p5jXN8AQM9LWM0D4loKWxJek",
		ts:     1614265330,
		body:   `{"test": 2432232314}`,
		want:   "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=",
	},
	// libraries/rust/src/lib.rs test_sign.
	"Rust": {
		secret: "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD",
		id:     "msg_27UH4WbU6Z5A5EzD8u03UvzRbpk",
		ts:     1649367553,
		body:   `{"email":"test@example.com","username":"test_user"}`,
		want:   "v1,tZ1I4/hDygAJgO5TYxiSd6Sd0kDW6hPenDe+bTa3Kkw=",
	},
}

// A signature that the libraries' tests use as a wrong one.
const otherSig = "v1,Ceo5qEr07ixe2NLpvHk3FH9bwy/WavXrAFQ/9tdO6mc="

func mustKey(t testing.TB, s string) []byte {
	t.Helper()
	key, err := stdwebhook.ParseSecret(s)
	if err != nil {
		t.Fatal(err)
	}
	return key
}

func TestSign(t *testing.T) {
	t.Parallel()
	for name, v := range vectors {
		t.Run("OK"+name, func(t *testing.T) {
			t.Parallel()
			got := stdwebhook.Sign(v.id, time.Unix(v.ts, 0), []byte(v.body), mustKey(t, v.secret))
			if got != v.want {
				t.Errorf("got %s, want %s", got, v.want)
			}
		})
	}
	t.Run("OKWholeSeconds", func(t *testing.T) {
		t.Parallel()
		v := vectors["Libraries"]
		got := stdwebhook.Sign(v.id, time.Unix(v.ts, 999_999_999), []byte(v.body), mustKey(t, v.secret))
		if got != v.want {
			t.Errorf("got %s, want %s", got, v.want)
		}
	})
	t.Run("OKRotation", func(t *testing.T) {
		t.Parallel()
		lib, rust := vectors["Libraries"], vectors["Rust"]
		got := stdwebhook.Sign(lib.id, time.Unix(lib.ts, 0), []byte(lib.body), mustKey(t, lib.secret), mustKey(t, rust.secret))
		entries := strings.Split(got, " ")
		if len(entries) != 2 || entries[0] != lib.want || !strings.HasPrefix(entries[1], "v1,") || entries[1] == lib.want {
			t.Errorf("got %q, want %s and a second v1 entry", got, lib.want)
		}
	})
	t.Run("OKNoSecrets", func(t *testing.T) {
		t.Parallel()
		if got := stdwebhook.Sign("evt_1", time.Unix(1, 0), nil); got != "" {
			t.Errorf("got %q", got)
		}
	})
}

func TestSetHeaders(t *testing.T) {
	t.Parallel()
	t.Run("OK", func(t *testing.T) {
		t.Parallel()
		v := vectors["Libraries"]
		h := http.Header{}
		stdwebhook.SetHeaders(h, v.id, time.Unix(v.ts, 0), []byte(v.body), mustKey(t, v.secret))
		want := map[string]string{"Webhook-Id": v.id, "Webhook-Timestamp": "1614265330", "Webhook-Signature": v.want}
		for name, value := range want {
			if got := h[name]; len(got) != 1 || got[0] != value {
				t.Errorf("%s: got %q, want %q", name, got, value)
			}
		}
		if len(h) != len(want) {
			t.Errorf("headers: %v", h)
		}
	})
}

func TestNewSecret(t *testing.T) {
	t.Parallel()
	t.Run("OK", func(t *testing.T) {
		t.Parallel()
		a, err := stdwebhook.NewSecret()
		if err != nil {
			t.Fatal(err)
		}
		b, err := stdwebhook.NewSecret()
		if err != nil {
			t.Fatal(err)
		}
		if !strings.HasPrefix(a, stdwebhook.SecretPrefix) || a == b {
			t.Errorf("secrets %q, %q", a, b)
		}
		if key := mustKey(t, a); len(key) != stdwebhook.SecretSize {
			t.Errorf("key of %d bytes", len(key))
		}
	})
}

func TestParseSecret(t *testing.T) {
	t.Parallel()
	t.Run("OK", func(t *testing.T) {
		t.Parallel()
		if key := mustKey(t, "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"); len(key) != 24 {
			t.Errorf("key of %d bytes", len(key))
		}
	})
	t.Run("OKBare", func(t *testing.T) {
		t.Parallel()
		bare := mustKey(t, "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
		if string(bare) != string(mustKey(t, "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")) {
			t.Error("the bare base64 is another key")
		}
	})
	for name, s := range map[string]string{
		"ErrEmpty":       "",
		"ErrPrefixOnly":  "whsec_",
		"ErrNotBase64":   "whsec_not base64!",
		"ErrURLBase64":   "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2La_-Sw",
		"ErrUnpadded":    "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaS",
		"ErrOtherPrefix": "whsk_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			if _, err := stdwebhook.ParseSecret(s); !errors.Is(err, stdwebhook.ErrBadSecret) {
				t.Errorf("ParseSecret(%q): %v", s, err)
			}
		})
	}
}

// signed returns the headers and body of the libraries' vector, as sent at
// its timestamp.
func signed(t testing.TB) (v vector, h http.Header, key []byte) {
	t.Helper()
	v = vectors["Libraries"]
	h = http.Header{}
	h.Set("webhook-id", v.id)
	h.Set("webhook-timestamp", strconv.FormatInt(v.ts, 10))
	h.Set("webhook-signature", v.want)
	return v, h, mustKey(t, v.secret)
}

func TestVerify(t *testing.T) {
	t.Parallel()
	t.Run("OK", func(t *testing.T) {
		t.Parallel()
		v, h, key := signed(t)
		if err := stdwebhook.Verify(h, []byte(v.body), time.Unix(v.ts, 0), key); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("OKRotation", func(t *testing.T) {
		t.Parallel()
		old, cur := mustKey(t, vectors["Libraries"].secret), mustKey(t, vectors["Rust"].secret)
		other := mustKey(t, "whsec_"+strings.Repeat("A", 32))
		now := time.Now()
		body := []byte(`{"id":"evt_42"}`)
		h := http.Header{}
		stdwebhook.SetHeaders(h, "evt_42", now, body, cur, old)
		if n := len(strings.Fields(h.Get("webhook-signature"))); n != 2 {
			t.Fatalf("%d signatures", n)
		}
		// A receiver with either secret, or both, accepts it.
		for _, keys := range [][][]byte{{cur}, {old}, {other, old}, {old, cur}} {
			if err := stdwebhook.Verify(h, body, now, keys...); err != nil {
				t.Errorf("%d secret(s): %v", len(keys), err)
			}
		}
		if err := stdwebhook.Verify(h, body, now, other); !errors.Is(err, stdwebhook.ErrNoMatchingSignature) {
			t.Errorf("another secret: %v", err)
		}
	})
	t.Run("OKMultiSig", func(t *testing.T) {
		t.Parallel()
		// The libraries' "valid multi sig is valid".
		v, h, key := signed(t)
		h.Set("webhook-signature", strings.Join([]string{otherSig, "v2,Ceo5qEr07ixe2NLpvHk3FH9bwy/WavXrAFQ/9tdO6mc=", v.want, otherSig}, " "))
		if err := stdwebhook.Verify(h, []byte(v.body), time.Unix(v.ts, 0), key); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("OKCanonicalHeaderNames", func(t *testing.T) {
		t.Parallel()
		v, _, key := signed(t)
		h := http.Header{"Webhook-Id": {v.id}, "Webhook-Timestamp": {"1614265330"}, "Webhook-Signature": {v.want}}
		if err := stdwebhook.Verify(h, []byte(v.body), time.Unix(v.ts, 0), key); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("OKAtTolerance", func(t *testing.T) {
		t.Parallel()
		v, h, key := signed(t)
		sent := time.Unix(v.ts, 0)
		for _, now := range []time.Time{sent.Add(stdwebhook.Tolerance), sent.Add(stdwebhook.Tolerance + 999*time.Millisecond), sent.Add(-stdwebhook.Tolerance)} {
			if err := stdwebhook.Verify(h, []byte(v.body), now, key); err != nil {
				t.Errorf("now %v: %v", now.Sub(sent), err)
			}
		}
	})
	t.Run("ErrTooOld", func(t *testing.T) {
		t.Parallel()
		v, h, key := signed(t)
		now := time.Unix(v.ts, 0).Add(stdwebhook.Tolerance + time.Second)
		if err := stdwebhook.Verify(h, []byte(v.body), now, key); !errors.Is(err, stdwebhook.ErrTooOld) {
			t.Errorf("got %v", err)
		}
	})
	t.Run("ErrTooNew", func(t *testing.T) {
		t.Parallel()
		v, h, key := signed(t)
		now := time.Unix(v.ts, 0).Add(-stdwebhook.Tolerance - time.Second)
		if err := stdwebhook.Verify(h, []byte(v.body), now, key); !errors.Is(err, stdwebhook.ErrTooNew) {
			t.Errorf("got %v", err)
		}
	})
	t.Run("ErrMissingHeaders", func(t *testing.T) {
		t.Parallel()
		for _, name := range []string{"webhook-id", "webhook-timestamp", "webhook-signature"} {
			v, h, key := signed(t)
			h.Del(name)
			err := stdwebhook.Verify(h, []byte(v.body), time.Unix(v.ts, 0), key)
			if !errors.Is(err, stdwebhook.ErrMissingHeaders) || !strings.Contains(err.Error(), name) {
				t.Errorf("no %s: %v", name, err)
			}
			h.Set(name, "")
			if err := stdwebhook.Verify(h, []byte(v.body), time.Unix(v.ts, 0), key); !errors.Is(err, stdwebhook.ErrMissingHeaders) {
				t.Errorf("empty %s: %v", name, err)
			}
		}
	})
	t.Run("ErrBadTimestamp", func(t *testing.T) {
		t.Parallel()
		for _, ts := range []string{"hello", "1614265330.5", "1614265330abc", " 1614265330", "99999999999999999999"} {
			v, h, key := signed(t)
			h.Set("webhook-timestamp", ts)
			if err := stdwebhook.Verify(h, []byte(v.body), time.Unix(v.ts, 0), key); !errors.Is(err, stdwebhook.ErrBadTimestamp) {
				t.Errorf("%q: %v", ts, err)
			}
		}
	})
	t.Run("ErrNoMatchingSignature", func(t *testing.T) {
		t.Parallel()
		for name, change := range map[string]func(v *vector, h http.Header, key *[]byte){
			"OtherSecret": func(_ *vector, _ http.Header, key *[]byte) { *key = mustKey(t, vectors["Rust"].secret) },
			"NoSecrets":   func(_ *vector, _ http.Header, key *[]byte) { *key = nil },
			"Body":        func(v *vector, _ http.Header, _ *[]byte) { v.body = `{"test": 2432232315}` },
			"BodySpace":   func(v *vector, _ http.Header, _ *[]byte) { v.body += "\n" },
			"ID":          func(_ *vector, h http.Header, _ *[]byte) { h.Set("webhook-id", "msg_p5jXN8AQM9LWM0D4loKWxJel") },
			"Timestamp":   func(_ *vector, h http.Header, _ *[]byte) { h.Set("webhook-timestamp", "1614265331") },
			"WrongSig":    func(_ *vector, h http.Header, _ *[]byte) { h.Set("webhook-signature", otherSig) },
			"Partial":     func(v *vector, h http.Header, _ *[]byte) { h.Set("webhook-signature", v.want[:8]) },
			"EmptyV1":     func(_ *vector, h http.Header, _ *[]byte) { h.Set("webhook-signature", "v1,") },
			"NoVersion":   func(v *vector, h http.Header, _ *[]byte) { h.Set("webhook-signature", v.want[3:]) },
			"OtherVersion": func(v *vector, h http.Header, _ *[]byte) {
				h.Set("webhook-signature", "v1a,"+v.want[3:])
			},
			"CommaSeparated": func(v *vector, h http.Header, _ *[]byte) {
				h.Set("webhook-signature", otherSig+","+v.want)
			},
			"LaterHeaderLine": func(v *vector, h http.Header, _ *[]byte) {
				h.Set("webhook-signature", otherSig)
				h.Add("webhook-signature", v.want)
			},
		} {
			v, h, key := signed(t)
			change(&v, h, &key)
			var keys [][]byte
			if key != nil {
				keys = append(keys, key)
			}
			if err := stdwebhook.Verify(h, []byte(v.body), time.Unix(v.ts, 0), keys...); !errors.Is(err, stdwebhook.ErrNoMatchingSignature) {
				t.Errorf("%s: %v", name, err)
			}
		}
	})
}

// FuzzVerify: any headers and body, and Verify neither panics nor accepts
// what the secret did not sign.
func FuzzVerify(f *testing.F) {
	v := vectors["Libraries"]
	f.Add(v.id, "1614265330", v.want, []byte(v.body))
	f.Add(v.id, "1614265330", otherSig+" "+v.want, []byte(v.body))
	f.Add("", "", "", []byte(nil))
	f.Add("a.b", "-9223372036854775808", "v1,, ,v1 v1a,x", []byte("{"))
	f.Add("x", "9223372036854775807", "v1,"+strings.Repeat("A", 10000), []byte{0xff, 0})
	key := mustKey(f, v.secret)
	now := time.Unix(v.ts, 0)
	f.Fuzz(func(t *testing.T, id, ts, sig string, body []byte) {
		h := http.Header{}
		h.Set("webhook-id", id)
		h.Set("webhook-timestamp", ts)
		h.Set("webhook-signature", sig)
		if err := stdwebhook.Verify(h, body, now, key); err != nil {
			return
		}
		sec, _ := strconv.ParseInt(h.Get("webhook-timestamp"), 10, 64)
		want := stdwebhook.Sign(h.Get("webhook-id"), time.Unix(sec, 0), body, key)
		for _, entry := range strings.Split(h.Get("webhook-signature"), " ") {
			if entry == want {
				return
			}
		}
		t.Fatalf("accepted %q without its signature %s", h.Get("webhook-signature"), want)
	})
}
