package outbound

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"strings"
	"time"

	"github.com/alipay-notify-gateway/gateway/internal/notify"
)

// The state of an authorization link (docs/authorization-flow.md): Alipay
// passes it back unchanged on the redirect, and documents it as at most 100
// characters of base64. The gateway's state is standard base64 (padded) of
//
//	version (1 byte, 1) | expiry (8, Unix seconds, big-endian) | nonce (12)
//	| len(app_id) (1) | app_id | tag (16)
//
// where tag is HMAC-SHA256 under stateKeyPurpose's key (derived from
// TOKEN_ENCRYPTION_KEY, the same on every replica) of everything before
// it, truncated to 128 bits. A state issued before a key rotation, under a
// key derived from one now in TOKEN_ENCRYPTION_OLD_KEYS, is still good. It is not secret, only unforgeable; it may be
// used more than once before it expires, each use needing a fresh code from
// Alipay.
const (
	stateVersion    = 1
	stateKeyPurpose = "auth-state v1"
	stateNonceLen   = 12
	stateTagLen     = 16
	stateFixedLen   = 1 + 8 + stateNonceLen + 1 + stateTagLen
	// maxStateAppID keeps the state within Alipay's 100 characters:
	// stateFixedLen+32 bytes are 96 characters of base64. Alipay's app ids
	// are 16 digits (at most 32 characters by its docs).
	maxStateAppID = 32
	// MaxStateLen is the longest state Alipay takes.
	MaxStateLen = 100
)

// stateSigner issues states with keys[0] and checks them with any of keys.
type stateSigner struct {
	keys [][]byte
}

// issue returns a new state for appID that expires at exp. It returns an
// EINVALID *notify.Error for an app id too long to fit, and an EINTERNAL
// one when the system has no randomness.
func (s stateSigner) issue(appID string, exp time.Time) (string, error) {
	if appID == "" || len(appID) > maxStateAppID {
		return "", notify.Errorf(notify.EINVALID, "bad_app_id", "app_id must be 1 to %d characters to fit in a state", maxStateAppID)
	}
	b := make([]byte, 0, stateFixedLen+len(appID))
	b = append(b, stateVersion)
	b = binary.BigEndian.AppendUint64(b, uint64(exp.Unix()))
	nonce := make([]byte, stateNonceLen)
	if _, err := rand.Read(nonce); err != nil {
		return "", notify.Errorf(notify.EINTERNAL, "no_randomness", "reading a nonce failed: %v", err)
	}
	b = append(b, nonce...)
	b = append(b, byte(len(appID)))
	b = append(b, appID...)
	b = append(b, tag(s.keys[0], b)...)
	return base64.StdEncoding.EncodeToString(b), nil
}

// tag is b's truncated HMAC-SHA256 under key.
func tag(key, b []byte) []byte {
	m := hmac.New(sha256.New, key)
	m.Write(b)
	return m.Sum(nil)[:stateTagLen]
}

// signed reports whether t is body's tag under one of the keys.
func (s stateSigner) signed(body, t []byte) bool {
	ok := false
	for _, k := range s.keys {
		ok = hmac.Equal(t, tag(k, body)) || ok
	}
	return ok
}

// check verifies state for the redirect of appID at now. It returns nil
// when state was issued with this key for appID and has not expired, and
// an EINVALID *notify.Error otherwise, whose reason says why:
// missing_state, malformed_state (not base64, wrong length or version),
// forged_state (its tag does not match: altered, or issued with another
// key), expired_state, or other_app_state (issued for another app than
// appID). The tag is checked before the expiry and the app are read.
func (s stateSigner) check(state, appID string, now time.Time) error {
	if state == "" {
		return notify.Errorf(notify.EINVALID, "missing_state", "the callback has no state: the authorization was not started from a link the gateway issued")
	}
	if len(state) > MaxStateLen {
		return notify.Errorf(notify.EINVALID, "malformed_state", "the state is %d characters long, over %d", len(state), MaxStateLen)
	}
	// A "+" that came back unencoded reads as a space; padding is optional.
	raw := strings.TrimRight(strings.ReplaceAll(state, " ", "+"), "=")
	b, err := base64.RawStdEncoding.DecodeString(raw)
	if err != nil {
		return notify.Errorf(notify.EINVALID, "malformed_state", "the state is not base64")
	}
	if len(b) < stateFixedLen+1 || len(b) > stateFixedLen+maxStateAppID {
		return notify.Errorf(notify.EINVALID, "malformed_state", "the state is %d bytes long: not one the gateway issues", len(b))
	}
	if b[0] != stateVersion || int(b[1+8+stateNonceLen]) != len(b)-stateFixedLen {
		return notify.Errorf(notify.EINVALID, "malformed_state", "the state is not one the gateway issues (version %d)", b[0])
	}
	if body, t := b[:len(b)-stateTagLen], b[len(b)-stateTagLen:]; !s.signed(body, t) {
		return notify.Errorf(notify.EINVALID, "forged_state", "the state's tag does not match: altered, or not issued with this TOKEN_ENCRYPTION_KEY")
	}
	body := b[:len(b)-stateTagLen]
	exp := time.Unix(int64(binary.BigEndian.Uint64(body[1:9])), 0)
	if !now.Before(exp) {
		return notify.Errorf(notify.EINVALID, "expired_state", "the link expired at %s, %s ago", exp.UTC().Format(time.RFC3339), now.Sub(exp).Round(time.Second))
	}
	if issued := string(body[stateFixedLen-stateTagLen:]); issued != appID {
		return notify.Errorf(notify.EINVALID, "other_app_state", "the state was issued for app %s, the redirect is for app %s", issued, appID)
	}
	return nil
}
