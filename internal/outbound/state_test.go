package outbound

import (
	"encoding/base64"
	"strings"
	"testing"
	"time"

	"github.com/alipay-notify-gateway/gateway/internal/notify"
)

func TestStateSigner_Check(t *testing.T) {
	t.Parallel()
	s := stateSigner{keys: [][]byte{[]byte("0123456789abcdef0123456789abcdef"), []byte("the old key")}}
	now := time.Unix(1767225600, 0) // 2026-01-01T00:00:00Z
	const app = "2021000000000001"
	issue := func(t *testing.T, appID string, exp time.Time) string {
		t.Helper()
		st, err := s.issue(appID, exp)
		if err != nil {
			t.Fatal(err)
		}
		return st
	}
	good := issue(t, app, now.Add(time.Hour))
	long := issue(t, strings.Repeat("9", maxStateAppID), now.Add(time.Hour))
	for _, c := range []struct {
		name, state, app string
		at               time.Time
		reason           string // "" for nil
	}{
		{"OK", good, app, now, ""},
		{"OKLongestAppID", long, strings.Repeat("9", maxStateAppID), now, ""},
		{"OKUnpadded", strings.TrimRight(long, "="), strings.Repeat("9", maxStateAppID), now, ""},
		{"OKJustBeforeExpiry", good, app, now.Add(time.Hour - time.Nanosecond), ""},
		{"ErrNoState", "", app, now, "missing_state"},
		{"ErrExpiredState", good, app, now.Add(time.Hour), "expired_state"},
		{"ErrOtherAppState", good, "2021000000000002", now, "other_app_state"},
		{"ErrURLAlphabet", strings.NewReplacer("+", "-", "/", "_").Replace(good) + "-_", app, now, "malformed_state"},
		{"ErrEmptyBytes", "====", app, now, "malformed_state"},
		{"ErrVersion", reencode(t, good, func(b []byte) { b[0] = 2 }), app, now, "malformed_state"},
		{"ErrLength", reencode(t, good, func(b []byte) { b[21]++ }), app, now, "malformed_state"},
		{"ErrForgedExpiry", reencode(t, good, func(b []byte) { b[8]++ }), app, now, "forged_state"},
		{"ErrForgedTag", reencode(t, good, func(b []byte) { b[len(b)-1]++ }), app, now, "forged_state"},
		{"OKOldKey", func() string {
			// Issued before the rotation, when the old key was current.
			st, _ := stateSigner{keys: [][]byte{[]byte("the old key")}}.issue(app, now.Add(time.Hour))
			return st
		}(), app, now, ""},
		{"ErrOtherKey", func() string {
			st, _ := stateSigner{keys: [][]byte{[]byte("another key")}}.issue(app, now.Add(time.Hour))
			return st
		}(), app, now, "forged_state"},
	} {
		t.Run(c.name, func(t *testing.T) {
			err := s.check(c.state, c.app, c.at)
			if c.reason == "" && err != nil || c.reason != "" && (notify.ErrorCode(err) != notify.EINVALID || notify.ErrorReason(err) != c.reason) {
				t.Fatalf("%v; want %q", err, c.reason)
			}
		})
	}
	t.Run("OKIssuedUnderCurrent", func(t *testing.T) {
		if err := (stateSigner{keys: s.keys[:1]}).check(good, app, now); err != nil {
			t.Fatalf("not under the current key: %v", err)
		}
	})
	t.Run("OKFitsAlipay", func(t *testing.T) {
		// At most 100 characters of standard base64, whatever the app id.
		if len(long) > MaxStateLen || len(good) > MaxStateLen {
			t.Fatalf("%d and %d characters", len(good), len(long))
		}
		if _, err := base64.StdEncoding.DecodeString(long); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("ErrAppIDTooLong", func(t *testing.T) {
		if _, err := s.issue(strings.Repeat("9", maxStateAppID+1), now); notify.ErrorCode(err) != notify.EINVALID {
			t.Fatalf("%v", err)
		}
	})
}

// reencode decodes state, changes its bytes with f and encodes it again.
func reencode(t *testing.T, state string, f func([]byte)) string {
	t.Helper()
	b, err := base64.StdEncoding.DecodeString(state)
	if err != nil {
		t.Fatal(err)
	}
	f(b)
	return base64.StdEncoding.EncodeToString(b)
}
