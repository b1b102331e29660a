package alipay

import (
	"bytes"
	"crypto"
	"crypto/rsa"
	"crypto/sha1"
	"crypto/sha256"
	"fmt"
	"hash"
	"sort"
	"time"

	"github.com/alipay-notify-gateway/gateway/internal/notify"
)

// Key is one Alipay public key an app trusts: the public key of public-key
// mode (SN empty), or one Alipay cert's key in certificate mode.
type Key struct {
	SN  string
	Pub *rsa.PublicKey
	// NotBefore and NotAfter bound a cert's validity (certificate mode);
	// both are zero for a public key, which does not expire.
	NotBefore, NotAfter time.Time

	prepared *rsaKey // set by NewVerifier
}

// ValidAt reports whether k may verify at t: always for a public key, and
// within its validity for a cert's key.
func (k Key) ValidAt(t time.Time) bool {
	return (k.NotBefore.IsZero() || !t.Before(k.NotBefore)) && (k.NotAfter.IsZero() || !t.After(k.NotAfter))
}

// App is one ISV app's verification settings.
type App struct {
	ID string
	// Keys are the Alipay keys that may have signed for this app: one in
	// public-key mode; one per configured cert in certificate mode (two
	// during a rotation).
	Keys     []Key
	CertMode bool
	// AllowRSA1 accepts sign_type=RSA (SHA1withRSA) for this app. Off by
	// default: the request cannot choose a weaker hash.
	AllowRSA1 bool
	// EncryptKey is the AES key for encrypt_type=AES biz_content, if any.
	EncryptKey []byte

	// The app's own side, for outbound OpenAPI calls and the WebSocket
	// channel: its private key (nil when not configured), and in
	// certificate mode its cert's SN and the Alipay root bundle's SN.
	PrivateKey *rsa.PrivateKey
	AppCertSN  string
	RootCertSN string
	// Delivery is how Alipay delivers this app's notifications (the
	// ALIPAY_CHANNEL setting): DeliverHTTP, DeliverWebSocket or
	// DeliverBoth. How one notification arrived is notify.ChannelHTTP or
	// notify.ChannelWebSocket.
	Delivery string
}

// How Alipay delivers an app's notifications.
const (
	DeliverHTTP      = "http"
	DeliverWebSocket = "websocket"
	DeliverBoth      = "both"
)

// UsesWebSocket reports whether Alipay delivers to a over the WebSocket.
func (a *App) UsesWebSocket() bool {
	return a.Delivery == DeliverWebSocket || a.Delivery == DeliverBoth
}

// Apps returns the configured apps, sorted by id.
func (v *Verifier) Apps() []*App {
	out := make([]*App, 0, len(v.apps))
	for _, id := range v.AppIDs() {
		out = append(out, v.apps[id])
	}
	return out
}

// Verifier verifies notifications for a fixed set of apps. It is safe for
// concurrent use.
type Verifier struct {
	apps map[string]*App
	skew time.Duration
}

// DefaultMaxClockSkew is how far ahead of the gateway's clock a
// notification's time may be before it is refused (see
// VerifierConfig.MaxClockSkew).
const DefaultMaxClockSkew = 5 * time.Minute

// VerifierConfig is what NewVerifierWith needs.
type VerifierConfig struct {
	Apps []*App
	// MaxClockSkew is how far ahead of the gateway's clock a
	// notification's utc_timestamp (or notify_time, or a WebSocket
	// message's x-timestamp) may be: Alipay dates a notification when it
	// makes it, so a later one means a clock out of step, or a time that
	// is not Alipay's. Zero means DefaultMaxClockSkew.
	MaxClockSkew time.Duration
}

// NewVerifier returns a Verifier for apps with DefaultMaxClockSkew. See
// NewVerifierWith.
func NewVerifier(apps []*App) (*Verifier, error) {
	return NewVerifierWith(VerifierConfig{Apps: apps})
}

// NewVerifierWith returns a Verifier for cfg's apps, and prepares each app's
// keys for verification. It returns an error when an app has no key, a key
// that crypto/rsa would refuse (see newRSAKey), or is listed twice.
func NewVerifierWith(cfg VerifierConfig) (*Verifier, error) {
	v := &Verifier{apps: make(map[string]*App, len(cfg.Apps)), skew: cfg.MaxClockSkew}
	if v.skew <= 0 {
		v.skew = DefaultMaxClockSkew
	}
	for _, a := range cfg.Apps {
		if a.ID == "" {
			return nil, fmt.Errorf("an app has no app_id")
		}
		if len(a.Keys) == 0 {
			return nil, fmt.Errorf("app %s: no Alipay public key or cert", a.ID)
		}
		if _, dup := v.apps[a.ID]; dup {
			return nil, fmt.Errorf("app %s is configured twice", a.ID)
		}
		for i := range a.Keys {
			k, err := newRSAKey(a.Keys[i].Pub)
			if err != nil {
				return nil, fmt.Errorf("app %s: Alipay key %d: %w", a.ID, i+1, err)
			}
			a.Keys[i].prepared = k
		}
		v.apps[a.ID] = a
	}
	return v, nil
}

// MaxClockSkew returns how far ahead of now a notification's time may be.
func (v *Verifier) MaxClockSkew() time.Duration { return v.skew }

// checkTime returns an ETOOEARLY *notify.Error when ts (ms since the epoch;
// what is named says which field) is more than the allowed skew ahead of
// now: such a time is not trusted, since as an ordering it would make every
// later genuine notification stale. Alipay resends what is refused, so a
// notification refused because the gateway's clock is behind is taken once
// the clock has caught up.
func (v *Verifier) checkTime(what string, ts int64, now time.Time) error {
	if ts == 0 {
		return nil
	}
	if ahead := time.UnixMilli(ts).Sub(now); ahead > v.skew {
		return notify.Errorf(notify.ETOOEARLY, "future_timestamp", "%s %s is %s ahead of the gateway's clock (at most %s allowed)",
			what, time.UnixMilli(ts).UTC().Format(time.RFC3339Nano), ahead.Round(time.Second), v.skew)
	}
	return nil
}

// App returns the app with id.
func (v *Verifier) App(id string) (*App, bool) {
	a, ok := v.apps[id]
	return a, ok
}

// AppIDs returns the configured app ids, sorted.
func (v *Verifier) AppIDs() []string {
	ids := make([]string, 0, len(v.apps))
	for id := range v.apps {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	return ids
}

// Match says how a notification verified.
type Match struct {
	App    *App
	Form   ContentForm
	CertSN string // the SN of the cert whose key verified, in cert mode
	// Digest is the SHA-256 of the signed content that verified, as
	// verified (in the body's charset). One signature verifies one content,
	// however its parameters are split, so the inbox keeps one row per
	// digest: the same signed content under another notify_id is a replay.
	Digest [sha256.Size]byte
}

// Verify checks f's signature with its app's keys, now. See verifyAt.
func (v *Verifier) Verify(f Form) (*Match, error) {
	return v.verifyAt(f, time.Now())
}

// VerifyAt checks f's signature with its app's keys valid at now: the
// signature check alone, without the shape, parameter, charset and time
// checks Notification adds. It returns the errors verifyAt returns: an
// EINVALID *notify.Error when app_id or sign_type is missing, and an
// EUNVERIFIED one, with the reason (unknown_app, missing_sign,
// bad_signature, sign_type_refused, unknown_cert_sn, cert_expired),
// otherwise. For the failed-verify diagnosis (internal/diagnose), whose
// verdict is the gateway's.
func (v *Verifier) VerifyAt(f Form, now time.Time) (*Match, error) {
	return v.verifyAt(f, now)
}

// verifyAt checks f's signature with its app's keys valid at now. It
// returns an EINVALID *notify.Error when app_id or sign_type is missing,
// and an EUNVERIFIED one, with the reason, when the app is unknown, the
// signature missing, undecodable or wrong, the sign type refused, or
// alipay_cert_sn unknown or naming a cert outside its validity.
//
// What is cheap comes first: a forged signature is refused once the RSA
// operation shows it is not a PKCS #1 v1.5 encoding, before any content
// form is built or hashed.
func (v *Verifier) verifyAt(f Form, now time.Time) (*Match, error) {
	appID := f[ParamAppID]
	if appID == "" {
		return nil, notify.Errorf(notify.EINVALID, "missing_parameter", "app_id is missing")
	}
	app, ok := v.apps[appID]
	if !ok {
		return nil, notify.Errorf(notify.EUNVERIFIED, "unknown_app", "app_id %q is not a configured app", notify.Clip(appID))
	}
	sign, ok := f[ParamSign]
	if !ok || sign == "" {
		return nil, notify.Errorf(notify.EUNVERIFIED, "missing_sign", "sign is missing")
	}
	if len(sign) > MaxSignLen {
		return nil, notify.Errorf(notify.EUNVERIFIED, "bad_signature", "sign is %d characters long; a signature is at most %d", len(sign), MaxSignLen)
	}
	sig, err := DecodeSign(sign)
	if err != nil {
		return nil, notify.Errorf(notify.EUNVERIFIED, "bad_signature", "sign is not base64")
	}
	signType := f[ParamSignType]
	if signType == "" {
		return nil, notify.Errorf(notify.EINVALID, "missing_parameter", "sign_type is missing (Alipay always sends it)")
	}
	hashID, err := app.hashFor(signType)
	if err != nil {
		return nil, err
	}
	keys, err := app.keysFor(f, now)
	if err != nil {
		return nil, err
	}
	forms := ContentForms(f)
	var sorted []string // f's keys, sorted once a signature opens
	for _, k := range keys {
		digest := pkcs1Digest(k.open(sig), hashID)
		if digest == nil {
			continue
		}
		if sorted == nil {
			sorted = sortedKeys(f)
		}
		for _, form := range forms {
			content := signContent(f, sorted, form)
			if !bytes.Equal(digestOf(hashID, content), digest) {
				continue
			}
			m := &Match{App: app, Form: form, CertSN: k.SN}
			if hashID == crypto.SHA256 {
				copy(m.Digest[:], digest)
			} else {
				m.Digest = sha256.Sum256(content)
			}
			return m, nil
		}
	}
	return nil, notify.Errorf(notify.EUNVERIFIED, "bad_signature", "signature does not verify with the key(s) of app %s", appID)
}

// keysFor returns the keys of a that may have signed f at now: in
// certificate mode the cert alipay_cert_sn names when f carries one, else
// every key within its validity. It returns an EUNVERIFIED *notify.Error
// when the SN is unknown, or when no cert it could be is valid at now.
func (a *App) keysFor(f Form, now time.Time) ([]Key, error) {
	keys := a.Keys
	if sn, ok := f[ParamCertSN]; ok && a.CertMode {
		keys = nil
		for _, k := range a.Keys {
			if k.SN == sn {
				keys = []Key{k}
				break
			}
		}
		if keys == nil {
			return nil, notify.Errorf(notify.EUNVERIFIED, "unknown_cert_sn", "alipay_cert_sn %q is not a configured Alipay cert of app %s", notify.Clip(sn), a.ID)
		}
	}
	valid := keys[:0:0]
	for _, k := range keys {
		if k.ValidAt(now) {
			valid = append(valid, k)
		}
	}
	if len(valid) == 0 {
		return nil, notify.Errorf(notify.EUNVERIFIED, "cert_expired", "no configured Alipay cert of app %s is valid at %s (expired or not yet valid): configure the current cert", a.ID, now.UTC().Format(time.RFC3339))
	}
	return valid, nil
}

// hashFor returns the hash for a sign_type, refusing what the app does not
// allow.
func (a *App) hashFor(signType string) (crypto.Hash, error) {
	switch signType {
	case "RSA2":
		return crypto.SHA256, nil
	case "RSA":
		if a.AllowRSA1 {
			return crypto.SHA1, nil
		}
		return 0, notify.Errorf(notify.EUNVERIFIED, "sign_type_refused", "sign_type RSA (SHA1) is not allowed for app %s", a.ID)
	}
	return 0, notify.Errorf(notify.EUNVERIFIED, "sign_type_refused", "sign_type %q is not supported", notify.Clip(signType))
}

// Digest returns the digest the gateway checks a signature of content
// against: SHA-1 for crypto.SHA1 (sign_type RSA), SHA-256 for any other
// hash (RSA2). It returns no error.
func Digest(h crypto.Hash, content []byte) []byte {
	return digestOf(h, content)
}

func digestOf(h crypto.Hash, content []byte) []byte {
	var d hash.Hash
	if h == crypto.SHA1 {
		d = sha1.New()
	} else {
		d = sha256.New()
	}
	d.Write(content)
	return d.Sum(nil)
}

// checkRequired returns an EINVALID *notify.Error naming the first required
// parameter f lacks: app_id, notify_id, msg_method (or notify_type for the
// older style) and sign_type. Alipay always sends sign_type, and a body
// without it would let the V1 and V2 content forms be told apart by nothing
// but a guess.
func checkRequired(f Form) error {
	for _, p := range []string{ParamAppID, ParamNotifyID, ParamSignType} {
		if f[p] == "" {
			return notify.Errorf(notify.EINVALID, "missing_parameter", "%s is missing", p)
		}
	}
	if f[ParamMsgMethod] == "" && f[ParamNotifyType] == "" {
		return notify.Errorf(notify.EINVALID, "missing_parameter", "msg_method (or notify_type) is missing")
	}
	return nil
}
