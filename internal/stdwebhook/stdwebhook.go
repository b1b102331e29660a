// Package stdwebhook signs and verifies webhooks as the Standard Webhooks
// specification does (symmetric signatures, "v1"): the headers webhook-id,
// webhook-timestamp and webhook-signature, an HMAC-SHA256 over
// "{id}.{timestamp}.{body}" under a secret shown as "whsec_" and base64, a
// signature header of space-separated "v1,<base64>" entries (one per secret
// during a rotation), and a five-minute tolerance on the timestamp. It
// follows the official libraries where the specification leaves a choice
// (docs/webhook-signing.md).
package stdwebhook

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// The headers of a signed webhook.
const (
	HeaderID        = "webhook-id"
	HeaderTimestamp = "webhook-timestamp"
	HeaderSignature = "webhook-signature"
)

const (
	// SecretPrefix starts the shown form of a secret.
	SecretPrefix = "whsec_"
	// SecretSize is the size of a secret NewSecret makes, in bytes. The
	// specification wants 24 to 64.
	SecretSize = 32
	// Tolerance is how far a webhook-timestamp may be from the receiver's
	// clock, either way, as in the official libraries.
	Tolerance = 5 * time.Minute
)

// version is the signature identifier of symmetric (HMAC-SHA256) signatures.
const version = "v1"

// Errors of ParseSecret and Verify; Verify's wrap them with details.
var (
	ErrBadSecret           = errors.New("not a webhook secret (want whsec_ and base64)")
	ErrMissingHeaders      = errors.New("missing webhook-id, webhook-timestamp or webhook-signature")
	ErrBadTimestamp        = errors.New("webhook-timestamp is not a Unix time in seconds")
	ErrTooOld              = errors.New("webhook-timestamp too old")
	ErrTooNew              = errors.New("webhook-timestamp too new")
	ErrNoMatchingSignature = errors.New("no matching signature")
)

// NewSecret returns a fresh secret in its shown form: SecretPrefix and the
// standard base64 of SecretSize random bytes. It returns an error only when
// the system's random source fails.
func NewSecret() (string, error) {
	var key [SecretSize]byte
	if _, err := rand.Read(key[:]); err != nil {
		return "", err
	}
	return SecretPrefix + base64.StdEncoding.EncodeToString(key[:]), nil
}

// ParseSecret returns the key of a secret: s is SecretPrefix and standard,
// padded base64, or, as the official libraries accept it, the base64 alone.
// It returns ErrBadSecret when s is not base64 or decodes to nothing.
func ParseSecret(s string) ([]byte, error) {
	key, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(s, SecretPrefix))
	if err != nil || len(key) == 0 {
		return nil, ErrBadSecret
	}
	return key, nil
}

// Sign returns the webhook-signature header value for a webhook: one
// "v1,<base64>" entry per secret, in their order, separated by spaces (none
// for no secrets). The timestamp is ts in whole seconds. id should not hold
// a '.' (the specification's advice; the gateway's ids do not).
func Sign(id string, ts time.Time, body []byte, secrets ...[]byte) string {
	content := signedContent(id, ts.Unix(), body)
	entries := make([]string, len(secrets))
	for i, key := range secrets {
		entries[i] = version + "," + base64.StdEncoding.EncodeToString(mac(key, content))
	}
	return strings.Join(entries, " ")
}

// SetHeaders sets the webhook-id, webhook-timestamp and webhook-signature
// headers of a webhook signed with secrets (see Sign).
func SetHeaders(h http.Header, id string, ts time.Time, body []byte, secrets ...[]byte) {
	h.Set(HeaderID, id)
	h.Set(HeaderTimestamp, strconv.FormatInt(ts.Unix(), 10))
	h.Set(HeaderSignature, Sign(id, ts, body, secrets...))
}

// Verify reports whether a received webhook is signed with one of secrets
// (the endpoint's, or its current and former during a rotation) and was
// sent within Tolerance of now. body must be the bytes as received. It
// returns an error wrapping ErrMissingHeaders when a header is missing or
// empty, ErrBadTimestamp when webhook-timestamp is not an integer, ErrTooOld
// or ErrTooNew when it is more than Tolerance from now, and
// ErrNoMatchingSignature when no "v1" entry of webhook-signature is the
// signature under any of secrets. Entries of other versions (such as
// "v1a", asymmetric) are skipped, as the official libraries do.
func Verify(h http.Header, body []byte, now time.Time, secrets ...[]byte) error {
	id, tsText, sigs := h.Get(HeaderID), h.Get(HeaderTimestamp), h.Get(HeaderSignature)
	if id == "" || tsText == "" || sigs == "" {
		var missing []string
		for _, name := range []string{HeaderID, HeaderTimestamp, HeaderSignature} {
			if h.Get(name) == "" {
				missing = append(missing, name)
			}
		}
		return fmt.Errorf("%w: no %s", ErrMissingHeaders, strings.Join(missing, ", "))
	}
	ts, err := strconv.ParseInt(tsText, 10, 64)
	if err != nil {
		return fmt.Errorf("%w: %q", ErrBadTimestamp, clip(tsText))
	}
	// Whole seconds, as the libraries compare (written so as not to
	// overflow on a timestamp far from now).
	n, tol := now.Unix(), int64(Tolerance/time.Second)
	switch {
	case ts < n-tol:
		return fmt.Errorf("%w: %s is %s before now (tolerance %s)", ErrTooOld, tsText, time.Unix(n, 0).Sub(time.Unix(ts, 0)), Tolerance)
	case ts > n+tol:
		return fmt.Errorf("%w: %s is %s after now (tolerance %s)", ErrTooNew, tsText, time.Unix(ts, 0).Sub(time.Unix(n, 0)), Tolerance)
	}
	content := signedContent(id, ts, body)
	for _, key := range secrets {
		want := []byte(base64.StdEncoding.EncodeToString(mac(key, content)))
		for _, entry := range strings.Split(sigs, " ") {
			v, sig, ok := strings.Cut(entry, ",")
			if ok && v == version && hmac.Equal([]byte(sig), want) {
				return nil
			}
		}
	}
	return fmt.Errorf("%w: %d secret(s), webhook-signature %q", ErrNoMatchingSignature, len(secrets), clip(sigs))
}

// signedContent is "{id}.{timestamp}.{body}".
func signedContent(id string, ts int64, body []byte) []byte {
	b := make([]byte, 0, len(id)+21+len(body))
	b = append(b, id...)
	b = append(b, '.')
	b = strconv.AppendInt(b, ts, 10)
	b = append(b, '.')
	return append(b, body...)
}

func mac(key, content []byte) []byte {
	m := hmac.New(sha256.New, key)
	m.Write(content)
	return m.Sum(nil)
}

// clip shortens a header value for an error message.
func clip(s string) string {
	const max = 200
	if len(s) > max {
		return s[:max] + "…"
	}
	return s
}
