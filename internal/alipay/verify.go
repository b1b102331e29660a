package alipay

import (
	"crypto"
	"crypto/rsa"
	"crypto/sha1"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"hash"
	"sort"
	"strings"
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
	// Channel is how Alipay delivers to this app: ChannelHTTP,
	// ChannelWebSocket or ChannelBoth.
	Channel string
}

// Delivery channels of an app.
const (
	ChannelHTTP      = "http"
	ChannelWebSocket = "websocket"
	ChannelBoth      = "both"
)

// UsesWebSocket reports whether Alipay delivers to a over the WebSocket.
func (a *App) UsesWebSocket() bool {
	return a.Channel == ChannelWebSocket || a.Channel == ChannelBoth
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
}

// NewVerifier returns a Verifier for apps, and prepares each app's keys for
// verification. It returns an error when an app has no key, a key that
// crypto/rsa would refuse (see newRSAKey), or is listed twice.
func NewVerifier(apps []*App) (*Verifier, error) {
	v := &Verifier{apps: make(map[string]*App, len(apps))}
	for _, a := range apps {
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
}

// Verify checks f's signature with its app's keys. It returns an EINVALID
// *notify.Error when app_id is missing, and an EUNVERIFIED one, with the
// reason, when the app is unknown, the signature missing, undecodable or
// wrong, the sign type refused, or alipay_cert_sn unknown.
func (v *Verifier) Verify(f Form) (*Match, error) {
	appID := f[ParamAppID]
	if appID == "" {
		return nil, notify.Errorf(notify.EINVALID, "missing_parameter", "app_id is missing")
	}
	app, ok := v.apps[appID]
	if !ok {
		return nil, notify.Errorf(notify.EUNVERIFIED, "unknown_app", "app_id %q is not a configured app", appID)
	}
	sign, ok := f[ParamSign]
	if !ok || sign == "" {
		return nil, notify.Errorf(notify.EUNVERIFIED, "missing_sign", "sign is missing")
	}
	sig, err := base64.StdEncoding.DecodeString(RepairSign(sign))
	if err != nil {
		return nil, notify.Errorf(notify.EUNVERIFIED, "bad_signature", "sign is not base64")
	}
	hashID, err := app.hashFor(f[ParamSignType])
	if err != nil {
		return nil, err
	}
	keys := app.Keys
	if sn, ok := f[ParamCertSN]; ok && app.CertMode {
		keys = nil
		for _, k := range app.Keys {
			if k.SN == sn {
				keys = []Key{k}
				break
			}
		}
		if keys == nil {
			return nil, notify.Errorf(notify.EUNVERIFIED, "unknown_cert_sn", "alipay_cert_sn %q is not a configured Alipay cert of app %s", sn, appID)
		}
	}
	// One RSA operation a key, whatever the number of content forms: the
	// opened signature is compared with each form's encoding in turn.
	forms := ContentForms(f)
	digests := make([][]byte, len(forms))
	for _, k := range keys {
		em := k.open(sig)
		if em == nil {
			continue
		}
		for i, form := range forms {
			if digests[i] == nil {
				digests[i] = digestOf(hashID, SignContent(f, form))
			}
			if isPKCS1v15(em, hashID, digests[i]) {
				return &Match{App: app, Form: form, CertSN: k.SN}, nil
			}
		}
	}
	return nil, notify.Errorf(notify.EUNVERIFIED, "bad_signature", "signature does not verify with the key(s) of app %s", appID)
}

// hashFor returns the hash for a sign_type, refusing what the app does not
// allow. An empty sign_type means RSA2.
func (a *App) hashFor(signType string) (crypto.Hash, error) {
	switch signType {
	case "RSA2", "":
		return crypto.SHA256, nil
	case "RSA":
		if a.AllowRSA1 {
			return crypto.SHA1, nil
		}
		return 0, notify.Errorf(notify.EUNVERIFIED, "sign_type_refused", "sign_type RSA (SHA1) is not allowed for app %s", a.ID)
	}
	return 0, notify.Errorf(notify.EUNVERIFIED, "sign_type_refused", "sign_type %q is not supported", signType)
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
// parameter f lacks.
func checkRequired(f Form) error {
	for _, p := range []string{ParamAppID, ParamNotifyID} {
		if strings.TrimSpace(f[p]) == "" {
			return notify.Errorf(notify.EINVALID, "missing_parameter", "%s is missing", p)
		}
	}
	if f[ParamMsgMethod] == "" && f[ParamNotifyType] == "" {
		return notify.Errorf(notify.EINVALID, "missing_parameter", "msg_method (or notify_type) is missing")
	}
	return nil
}
