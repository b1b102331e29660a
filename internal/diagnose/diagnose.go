package diagnose

import (
	"bytes"
	"crypto"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"net/url"
	"path/filepath"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/alipay-notify-gateway/gateway/internal/alipay"
	"github.com/alipay-notify-gateway/gateway/internal/notify"
)

// Source is one piece of key material as configured: a public key (PEM or
// bare base64), a certificate file, or a root bundle.
type Source struct {
	// Name says where it came from, for the report: "ALIPAY_PUBLIC_KEY",
	// "ALIPAY_PUBLIC_KEY_FILE keys/public_key.txt", a file name.
	Name string
	Data []byte
}

// DiagnoseInput is the configuration a notification is checked against: the
// same settings as one app of the gateway, read but not yet checked, so that
// a setting the gateway would refuse is reported rather than fatal.
type DiagnoseInput struct {
	// PublicKeys are the Alipay public keys of public-key mode (normally one).
	PublicKeys []Source
	// RootCert and Certs are certificate mode's alipayRootCert.crt and
	// alipayCertPublicKey_RSA2.crt files (two of them during a rotation).
	RootCert *Source
	Certs    []Source
	// AppPublicKeys are, optionally, the app's own public key(s) or cert
	// (应用公钥, appCertPublicKey_<appid>.crt): never used to accept, only
	// to recognise a mix-up of the app's key with Alipay's.
	AppPublicKeys []Source
	// AllowRSA1 is ALIPAY_ALLOW_RSA1.
	AllowRSA1 bool
	// Now is the time certificates are checked at; zero means time.Now().
	Now time.Time
}

// Level is a finding's weight.
type Level string

// Finding levels: an error is a reason a notification is refused (or a
// setting the gateway refuses); a warning is wrong but handled; info
// explains.
const (
	LevelError   Level = "error"
	LevelWarning Level = "warning"
	LevelInfo    Level = "info"
)

// Finding codes. They are stable: scripts and tests may match them.
const (
	DiagMalformedForm       = "malformed_form"            // the body does not parse as a form
	DiagBodyDecodedTwice    = "body_decoded_twice"        // the body given was already URL-decoded once
	DiagValuesEncodedTwice  = "values_encoded_twice"      // the sender URL-encoded values twice
	DiagPercentInValues     = "percent_in_values"         // values hold '%': decode exactly once
	DiagMissingAppID        = "missing_app_id"            // no app_id
	DiagMissingSign         = "missing_sign"              // no sign
	DiagSignSpacesRepaired  = "sign_spaces_repaired"      // '+' arrived as spaces in sign and were restored
	DiagSignNotBase64       = "sign_not_base64"           // sign is not standard base64, even repaired
	DiagSignWrongLength     = "sign_wrong_length"         // sign decodes to the wrong number of bytes
	DiagSignEncodedTwice    = "sign_encoded_twice"        // sign verifies once URL-decoded again
	DiagSignURLSafe         = "sign_url_safe_base64"      // sign uses the URL-safe base64 alphabet
	DiagNoKeys              = "no_keys"                   // nothing usable to verify with
	DiagBothModes           = "both_modes"                // a public key and certs are both configured
	DiagKeyIsPrivate        = "key_is_private"            // the "public key" is a private key
	DiagKeyIsCert           = "key_is_cert"               // the "public key" is a certificate
	DiagKeyUnreadable       = "key_unreadable"            // the public key does not parse
	DiagKeyIsAppKey         = "key_is_app_key"            // the configured Alipay key is the app's own key
	DiagSignedWithAppKey    = "signed_with_app_key"       // the app's own public key verifies it
	DiagPrivateHalfVerifies = "private_key_half_verifies" // the public half of a pasted private key verifies it
	DiagPastedCertVerifies  = "pasted_cert_verifies"      // the key of a cert pasted as a public key verifies it
	DiagRootMissing         = "root_missing"              // certs without a root bundle
	DiagRootUnreadable      = "root_unreadable"           // the root bundle does not parse
	DiagCertMissing         = "cert_missing"              // a root bundle without certs
	DiagCertUnreadable      = "cert_unreadable"           // a cert file does not parse
	DiagCertExpired         = "cert_expired"              // a cert has expired
	DiagCertNotYetValid     = "cert_not_yet_valid"        // a cert is not valid yet
	DiagCertUnchained       = "cert_unchained"            // a cert does not chain to the root bundle
	DiagCertIsAppCert       = "cert_is_app_cert"          // a cert looks like the app's own cert
	DiagRefusedCertVerifies = "refused_cert_verifies"     // only a cert the gateway refuses verifies it
	DiagWrongKey            = "wrong_key"                 // no key verifies it, whatever was tried
	DiagEmptyValuesDropped  = "empty_values_dropped"      // the sender's signer dropped empty values
	DiagValuesTrimmed       = "values_trimmed"            // the sender's signer trimmed values
	DiagCharsetMismatch     = "charset_mismatch"          // signed in one charset, sent in another
	DiagContentForm         = "content_form"              // which content form (V1/V2) verified
	DiagSHA1Refused         = "sha1_refused"              // sign_type=RSA (SHA1) and RSA1 not allowed
	DiagSHA1Allowed         = "sha1_allowed"              // sign_type=RSA accepted because allowed
	DiagSHA1DeclaredRSA2    = "sha1_declared_rsa2"        // sign_type RSA2 (or none) but a SHA1 signature
	DiagSHA256DeclaredRSA   = "sha256_declared_rsa"       // sign_type RSA but a SHA256 signature
	DiagSignTypeUnsupported = "sign_type_unsupported"     // a sign_type other than RSA2 or RSA
	DiagUnknownCertSN       = "unknown_cert_sn"           // alipay_cert_sn is none of the configured certs'
	DiagCertSNIgnored       = "cert_sn_ignored"           // alipay_cert_sn in public-key mode
	DiagNoCertSN            = "no_cert_sn"                // cert mode, no alipay_cert_sn: every cert tried
	DiagNotANotification    = "not_a_notification"        // verifies, but the gateway refuses it for another reason
	DiagGatewayRefuses      = "gateway_refuses"           // what the gateway answers, and its reason
)

// Finding is one thing Diagnose found.
type Finding struct {
	Code  string `json:"code"`
	Level Level  `json:"level"`
	Text  string `json:"text"`
}

// Key roles in a report.
const (
	RoleAlipay = "alipay" // configured as Alipay's key or cert
	RoleApp    = "app"    // the app's own public key, for comparison only
)

// KeyInfo describes one configured key or cert.
type KeyInfo struct {
	Name string `json:"name"`
	Role string `json:"role"`
	// Desc is what it is: "RSA 2048 public key, fingerprint …", "cert SN …".
	Desc string `json:"desc"`
	SN   string `json:"sn,omitempty"`
	// Usable is whether the gateway would verify with it.
	Usable bool `json:"usable"`
	// Problem says why it is not usable (as far as it is a key at all).
	Problem string `json:"problem,omitempty"`
}

// Attempt is one signature check Diagnose made.
type Attempt struct {
	Form string `json:"form"` // content form: v1, v2, v1+cert_sn, v2+cert_sn
	// Variant is "" for the notification as received, or the alteration
	// tried ("empty values dropped", ...).
	Variant string `json:"variant,omitempty"`
	Hash    string `json:"hash"` // SHA256 or SHA1
	Key     string `json:"key"`  // the key's name, and SN in cert mode
	OK      bool   `json:"ok"`
}

// Report is Diagnose's answer.
type Report struct {
	// Verified is whether the signature verifies as the gateway checks it,
	// with the keys it would load.
	Verified bool `json:"verified"`
	// Reason is, when not verified, the gateway's reason (bad_signature,
	// unknown_cert_sn, sign_type_refused, missing_sign, malformed_form, ...).
	Reason string `json:"reason,omitempty"`
	// Form, Key and CertSN say what verified.
	Form   string `json:"form,omitempty"`
	Key    string `json:"key,omitempty"`
	CertSN string `json:"cert_sn,omitempty"`

	// The notification's identifying parameters, as received.
	AppID        string `json:"app_id,omitempty"`
	NotifyID     string `json:"notify_id,omitempty"`
	Method       string `json:"method,omitempty"`
	SignType     string `json:"sign_type,omitempty"`
	Charset      string `json:"charset,omitempty"`
	AlipayCertSN string `json:"alipay_cert_sn,omitempty"`

	Keys     []KeyInfo `json:"keys"`
	Attempts []Attempt `json:"attempts"`
	// Findings are ordered errors first (gateway_refuses, the gateway's
	// own answer, leading), then warnings, then info.
	Findings []Finding `json:"findings"`
}

// Has reports whether r has a finding with code.
func (r *Report) Has(code string) bool {
	_, ok := r.Finding(code)
	return ok
}

// Finding returns r's finding with code.
func (r *Report) Finding(code string) (Finding, bool) {
	for _, f := range r.Findings {
		if f.Code == code {
			return f, true
		}
	}
	return Finding{}, false
}

// Candidate kinds: how a key relates to the configuration.
const (
	kindUsable      = iota // the gateway verifies with it
	kindRefused            // an Alipay cert the gateway refuses to load
	kindPrivateHalf        // the public half of a private key pasted as the public key
	kindPastedCert         // the key of a cert pasted as the public key
	kindApp                // the app's own public key
)

type candidate struct {
	name string // for attempts: the source's name (and SN)
	src  string // the source's name alone
	pub  *rsa.PublicKey
	sn   string
	kind int
	why  string // kindRefused: why the gateway refuses it
}

// variant is an alteration of the notification tried when it does not
// verify as received: a different content, or a different signature.
type variant struct {
	name    string
	code    string
	content func(alipay.Form, alipay.ContentForm) []byte // nil: alipay.SignContent
	sig     []byte                                       // nil: the received signature
}

type diagnosis struct {
	in        DiagnoseInput
	r         Report
	cands     []*candidate
	usable    []alipay.Key
	certMode  bool
	rootSN    string
	refusedSN map[string]string // SN of a refused cert -> why
}

// Diagnose checks a notification body (as captured; a trailing newline is
// ignored) against a configuration and says whether it verifies as the
// gateway checks it and, when it does not, why, as precisely as can be told:
// it tries every configured key and cert against every content form and
// both hashes, then the usual mistakes of senders (empty values dropped,
// values trimmed or encoded twice, the wrong charset), of whoever captured
// the body (decoded twice) and of the configuration (a private key, a cert or
// the app's own key pasted as Alipay's public key; an expired or unchained
// cert; an unknown alipay_cert_sn). The verdict itself is the gateway's own
// Verifier's. It cannot tell whether app_id is a configured app: it takes
// the configuration given as that app's.
func Diagnose(body []byte, in DiagnoseInput) Report {
	if in.Now.IsZero() {
		in.Now = time.Now()
	}
	d := &diagnosis{in: in, refusedSN: map[string]string{}}
	d.r.Keys, d.r.Attempts, d.r.Findings = []KeyInfo{}, []Attempt{}, []Finding{}
	body = bytes.TrimRight(body, "\r\n")
	d.loadKeys()
	d.run(body)
	slices.SortStableFunc(d.r.Findings, func(a, b Finding) int { return levelRank(a) - levelRank(b) })
	return d.r
}

func levelRank(f Finding) int {
	switch f.Level {
	case LevelError:
		if f.Code == DiagGatewayRefuses {
			return -1
		}
		return 0
	case LevelWarning:
		return 1
	}
	return 2
}

func (d *diagnosis) add(level Level, code, format string, args ...any) {
	d.r.Findings = append(d.r.Findings, Finding{Code: code, Level: level, Text: fmt.Sprintf(format, args...)})
}

// loadKeys reads the configuration as the gateway would (config.Load), but
// records what it would refuse instead of stopping, and keeps refused keys
// as candidates to explain with.
func (d *diagnosis) loadKeys() {
	in := d.in
	if len(in.PublicKeys) > 0 && (in.RootCert != nil || len(in.Certs) > 0) {
		d.add(LevelError, DiagBothModes, "both a public key and certificates are configured: the gateway refuses to start; use the public key (ALIPAY_PUBLIC_KEY*) or the certs (ALIPAY_ROOT_CERT_FILE + ALIPAY_PUBLIC_CERT_FILE), not both. Both are tried here.")
	}
	for _, s := range in.PublicKeys {
		d.loadPublicKey(s)
	}
	if in.RootCert != nil || len(in.Certs) > 0 {
		d.loadCerts()
	}
	for _, s := range in.AppPublicKeys {
		d.loadAppKey(s)
	}
	if len(d.usable) == 0 && !d.r.Has(DiagNoKeys) {
		if len(in.PublicKeys) == 0 && in.RootCert == nil && len(in.Certs) == 0 {
			d.add(LevelError, DiagNoKeys, "no Alipay public key or cert is configured: set ALIPAY_PUBLIC_KEY(_FILE), or ALIPAY_ROOT_CERT_FILE and ALIPAY_PUBLIC_CERT_FILE")
		} else {
			d.add(LevelError, DiagNoKeys, "none of the configured keys or certs is usable: the gateway would not start")
		}
	}
	// The app's own key configured as Alipay's: certain when the app key
	// was given too.
	for _, a := range d.cands {
		if a.kind != kindApp {
			continue
		}
		for _, c := range d.cands {
			if c.kind != kindApp && c.pub.Equal(a.pub) {
				d.add(LevelError, DiagKeyIsAppKey, "%s is your app's public key (应用公钥, the same key as %s), not Alipay's public key (支付宝公钥): notifications are signed by Alipay and verify only with Alipay's key. In the open platform console, under 接口加签方式, copy 支付宝公钥 (or, in cert mode, download alipayCertPublicKey_RSA2.crt), not 应用公钥.", c.src, a.src)
			}
		}
	}
}

func (d *diagnosis) addKey(k KeyInfo, c *candidate) {
	d.r.Keys = append(d.r.Keys, k)
	if c != nil {
		d.cands = append(d.cands, c)
	}
}

func (d *diagnosis) loadPublicKey(s Source) {
	pub, err := alipay.ParsePublicKey(s.Data)
	if err == nil {
		d.usable = append(d.usable, alipay.Key{Pub: pub})
		d.addKey(KeyInfo{Name: s.Name, Role: RoleAlipay, Desc: describeKey(pub), Usable: true},
			&candidate{name: s.Name, src: s.Name, pub: pub, kind: kindUsable})
		return
	}
	// Why it does not parse: the usual mix-ups first.
	if priv, perr := alipay.ParsePrivateKey(s.Data); perr == nil {
		pub := &priv.PublicKey
		d.add(LevelError, DiagKeyIsPrivate, "%s is a private key, not a public key (%v). Alipay's public key (支付宝公钥) is shown in the console; a private key there is most likely your app's private key (应用私钥): keep it secret, and take it out of the gateway's settings.", s.Name, err)
		d.addKey(KeyInfo{Name: s.Name, Role: RoleAlipay, Desc: "RSA private key; its public half: " + describeKey(pub), Problem: "a private key, not a public key"},
			&candidate{name: s.Name + " (its public half)", src: s.Name, pub: pub, kind: kindPrivateHalf})
		return
	}
	if cert := firstCert(s.Data); cert != nil {
		d.add(LevelError, DiagKeyIsCert, "%s is a certificate (%s), not a public key: certificates are for certificate mode: set ALIPAY_ROOT_CERT_FILE to alipayRootCert.crt and ALIPAY_PUBLIC_CERT_FILE to alipayCertPublicKey_RSA2.crt instead of ALIPAY_PUBLIC_KEY*.", s.Name, err)
		info := KeyInfo{Name: s.Name, Role: RoleAlipay, Desc: describeCert(cert), SN: alipay.CertSN(cert), Problem: "a certificate, not a public key"}
		if pub, ok := cert.PublicKey.(*rsa.PublicKey); ok {
			d.addKey(info, &candidate{name: s.Name + " (the cert's key)", src: s.Name, pub: pub, sn: alipay.CertSN(cert), kind: kindPastedCert})
		} else {
			d.addKey(info, nil)
		}
		return
	}
	d.add(LevelError, DiagKeyUnreadable, "%s: %v. Paste 支付宝公钥 from the console as it is shown (bare base64) or as a PUBLIC KEY PEM.", s.Name, err)
	d.addKey(KeyInfo{Name: s.Name, Role: RoleAlipay, Desc: "unreadable", Problem: err.Error()}, nil)
}

func (d *diagnosis) loadCerts() {
	d.certMode = true
	in := d.in
	var roots *alipay.RootBundle
	switch {
	case in.RootCert == nil:
		d.add(LevelError, DiagRootMissing, "certificates are configured without the root bundle (ALIPAY_ROOT_CERT_FILE, alipayRootCert.crt): the gateway refuses to start. Their keys are still tried here.")
	default:
		var err error
		roots, err = alipay.ParseRootBundle(in.RootCert.Data)
		if err != nil {
			d.add(LevelError, DiagRootUnreadable, "%s: %v: the gateway refuses to start", in.RootCert.Name, err)
			roots = nil
		} else {
			d.rootSN = roots.SN
		}
	}
	if len(in.Certs) == 0 {
		d.add(LevelError, DiagCertMissing, "a root bundle is configured but no Alipay cert (ALIPAY_PUBLIC_CERT_FILE, alipayCertPublicKey_RSA2.crt)")
	}
	for _, s := range in.Certs {
		d.loadCert(s, roots)
	}
}

func (d *diagnosis) loadCert(s Source, roots *alipay.RootBundle) {
	leaf, err := alipay.ParseLeafCert(s.Data)
	if err != nil {
		why := err.Error()
		if _, kerr := alipay.ParsePublicKey(s.Data); kerr == nil {
			why += "; it is a public key: that is public-key mode (ALIPAY_PUBLIC_KEY_FILE)"
		}
		d.add(LevelError, DiagCertUnreadable, "%s: %s: the gateway refuses to start", s.Name, why)
		d.addKey(KeyInfo{Name: s.Name, Role: RoleAlipay, Desc: "unreadable", Problem: why}, nil)
		return
	}
	sn := alipay.CertSN(leaf)
	info := KeyInfo{Name: s.Name, Role: RoleAlipay, Desc: describeCert(leaf), SN: sn}
	name := s.Name + " (SN " + sn + ")"
	if looksLikeAppCert(s.Name) {
		d.add(LevelWarning, DiagCertIsAppCert, "%s looks like your app's own cert (appCertPublicKey_<appid>.crt, subject %s), not Alipay's (alipayCertPublicKey_RSA2.crt): notifications are signed by Alipay", s.Name, leaf.Subject)
	}
	pub, isRSA := leaf.PublicKey.(*rsa.PublicKey)
	var refusal string
	if roots != nil {
		c, err := alipay.ParseAlipayCert(s.Data, roots, d.in.Now)
		if err == nil {
			d.usable = append(d.usable, alipay.Key{SN: c.SN, Pub: c.Key})
			info.Usable = true
			d.addKey(info, &candidate{name: name, src: s.Name, pub: c.Key, sn: c.SN, kind: kindUsable})
			return
		}
		refusal = err.Error()
		switch {
		case !isRSA:
			d.add(LevelError, DiagCertUnreadable, "%s: %v: the gateway refuses to start", s.Name, err)
		case d.in.Now.After(leaf.NotAfter):
			d.add(LevelError, DiagCertExpired, "%s (SN %s) expired on %s: the gateway refuses to start with it. Alipay signs with a newer cert by now: download the current alipayCertPublicKey_RSA2.crt from the console (and the new alipayRootCert.crt if it changed); keep the old one configured next to the new one only while it is valid.", s.Name, sn, leaf.NotAfter.UTC().Format(time.RFC3339))
		case d.in.Now.Before(leaf.NotBefore):
			d.add(LevelError, DiagCertNotYetValid, "%s (SN %s) is not valid before %s: the gateway refuses to start with it (check the host's clock)", s.Name, sn, leaf.NotBefore.UTC().Format(time.RFC3339))
		case errors.Is(err, alipay.ErrChain):
			d.add(LevelError, DiagCertUnchained, "%s (SN %s, issuer %s) does not chain to the roots in %s: %s. The gateway refuses to start with it: a cert that does not chain to Alipay's root is not Alipay's (or the root bundle is not the one that goes with it; download both from the console; the cert file must hold the intermediate after the cert).", s.Name, sn, leaf.Issuer, d.in.RootCert.Name, strings.TrimPrefix(strings.TrimPrefix(refusal, alipay.ErrChain.Error()), ": "))
		default:
			d.add(LevelError, DiagCertUnreadable, "%s: %v: the gateway refuses to start", s.Name, err)
		}
	} else {
		refusal = "no usable root bundle to check it against"
	}
	info.Problem = refusal
	if !isRSA {
		d.addKey(info, nil)
		return
	}
	d.refusedSN[sn] = refusal
	d.addKey(info, &candidate{name: name + " [refused]", src: s.Name, pub: pub, sn: sn, kind: kindRefused, why: refusal})
}

func (d *diagnosis) loadAppKey(s Source) {
	pub, err := alipay.ParsePublicKey(s.Data)
	if err != nil {
		if cert := firstCert(s.Data); cert != nil {
			if p, ok := cert.PublicKey.(*rsa.PublicKey); ok {
				d.addKey(KeyInfo{Name: s.Name, Role: RoleApp, Desc: describeCert(cert), SN: alipay.CertSN(cert)},
					&candidate{name: s.Name + " (app)", src: s.Name, pub: p, kind: kindApp})
				return
			}
		}
		d.addKey(KeyInfo{Name: s.Name, Role: RoleApp, Desc: "unreadable", Problem: err.Error()}, nil)
		return
	}
	d.addKey(KeyInfo{Name: s.Name, Role: RoleApp, Desc: describeKey(pub)},
		&candidate{name: s.Name + " (app)", src: s.Name, pub: pub, kind: kindApp})
}

// looksLikeAppCert reports whether a cert file is named as Alipay names the
// app's own cert.
func looksLikeAppCert(name string) bool {
	return strings.HasPrefix(strings.ToLower(filepath.Base(name)), "appcertpublickey")
}

// firstCert returns the first certificate in data, PEM or bare base64 DER.
func firstCert(data []byte) *x509.Certificate {
	if c, err := alipay.ParseLeafCert(data); err == nil {
		return c
	}
	der, err := base64.StdEncoding.DecodeString(string(stripSpace(bytes.TrimSpace(data))))
	if err != nil {
		return nil
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		return nil
	}
	return c
}

// stripSpace drops every ASCII white space byte (line breaks in a pasted
// cert).
func stripSpace(b []byte) []byte {
	return bytes.Map(func(r rune) rune {
		switch r {
		case ' ', '\t', '\r', '\n':
			return -1
		}
		return r
	}, b)
}

func describeKey(pub *rsa.PublicKey) string {
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return fmt.Sprintf("RSA %d public key", pub.N.BitLen())
	}
	sum := sha256.Sum256(der)
	return fmt.Sprintf("RSA %d public key, sha256 %s", pub.N.BitLen(), hex.EncodeToString(sum[:6]))
}

func describeCert(c *x509.Certificate) string {
	return fmt.Sprintf("cert SN %s, subject %q, valid %s to %s", alipay.CertSN(c), c.Subject.String(),
		c.NotBefore.UTC().Format(time.DateOnly), c.NotAfter.UTC().Format(time.DateOnly))
}

func (d *diagnosis) run(body []byte) {
	f, err := alipay.ParseForm(body)
	if err != nil {
		d.r.Reason = notify.ErrorReason(err)
		d.add(LevelError, DiagGatewayRefuses, "the gateway answers 400 fail: %s", notify.ErrorMessage(err))
		d.add(LevelError, DiagMalformedForm, "the body is not a form the gateway accepts: %s. Give the raw body exactly as posted (application/x-www-form-urlencoded), not a log's rendering of it.", notify.ErrorMessage(err))
		// A body that was URL-decoded once already (as a log prints it)
		// often no longer parses ("%" in a value).
		if raw := splitRaw(body); raw != nil && raw[alipay.ParamSign] != "" {
			d.summarize(raw)
			if sig := decodeSign(raw[alipay.ParamSign]); sig != nil {
				if a := d.tryVariant(raw, variant{name: "body taken as already decoded"}, sig, d.hashes(raw)[0], d.alipayCands()); a != nil {
					d.add(LevelError, DiagBodyDecodedTwice, "%s", decodedTwiceText(a))
				}
			}
		}
		return
	}
	d.summarize(f)
	d.verdict(body, f)
	sign := f[alipay.ParamSign]
	if sign == "" {
		return
	}
	if f[alipay.ParamAppID] == "" {
		d.add(LevelError, DiagMissingAppID, "app_id is missing: the gateway answers 400 before checking the signature")
	}

	sig := decodeSign(sign)
	d.checkSign(sign, sig)

	hashes := d.hashes(f)
	var ok []Attempt
	if sig != nil {
		ok = d.tryAll(f, sig, hashes[0])
		if len(ok) == 0 {
			ok = d.tryAll(f, sig, hashes[1])
		}
	}
	if strings.Contains(sign, " ") {
		result := "it then verified"
		if !d.r.Verified {
			result = "it still did not verify"
		}
		d.add(LevelWarning, DiagSignSpacesRepaired, "sign held %d space(s): its '+' characters arrived as spaces because the sender did not URL-encode sign (a '+' in a form body means a space). The gateway restores them (as here), and %s. The sender should URL-encode every value (sign's '+' as %%2B).", strings.Count(sign, " "), result)
	}
	if d.r.Verified {
		d.matchedKey(ok)
		d.explainVerified(f)
		return
	}
	if len(ok) > 0 {
		d.explainCrypto(f, ok)
		return
	}
	if a := d.tryVariants(f, sig, hashes[0]); a != nil {
		return
	}
	// Whoever captured the body may have decoded it once already.
	if raw := splitRaw(body); raw != nil && raw[alipay.ParamSign] != "" && bytes.ContainsAny(body, "%+") {
		if a := d.tryVariant(raw, variant{name: "body taken as already decoded"}, decodeSign(raw[alipay.ParamSign]), hashes[0], d.alipayCands()); a != nil {
			d.add(LevelError, DiagBodyDecodedTwice, "%s", decodedTwiceText(a))
			d.keyKindNotes(d.candByName(a.Key))
			return
		}
	}
	for _, h := range hashes {
		if sig == nil {
			break
		}
		if a := d.tryVariant(f, variant{}, sig, h, d.appCands()); a != nil {
			c := d.candByName(a.Key)
			d.add(LevelError, DiagSignedWithAppKey, "the notification verifies with %s, your app's public key (应用公钥), not with Alipay's (支付宝公钥): it was signed with your app's private key (应用私钥), so it did not come from Alipay. Alipay signs with its own key; if you produced this notification for a test, sign it with the private key whose public half is configured as Alipay's (alipayctl send --key).", c.src)
			return
		}
	}
	d.wrongKey(f, sig)
}

// summarize copies the notification's identifying parameters.
func (d *diagnosis) summarize(f alipay.Form) {
	d.r.AppID, d.r.NotifyID, d.r.Method = f[alipay.ParamAppID], f[alipay.ParamNotifyID], f.Method()
	d.r.SignType, d.r.Charset, d.r.AlipayCertSN = f[alipay.ParamSignType], f[alipay.ParamCharset], f[alipay.ParamCertSN]
}

// verdict asks the gateway's own Verifier.
func (d *diagnosis) verdict(body []byte, f alipay.Form) {
	id := f[alipay.ParamAppID]
	if id == "" {
		id = "(none)"
	}
	app := &alipay.App{ID: id, Keys: d.usable, CertMode: d.certMode, AllowRSA1: d.in.AllowRSA1}
	v, err := alipay.NewVerifier([]*alipay.App{app})
	if err != nil {
		d.r.Reason = DiagNoKeys
		d.add(LevelError, DiagGatewayRefuses, "the gateway would not start with this configuration (%v)", err)
		return
	}
	// The gateway's answer is Notification's (shapes, then the signature,
	// then the time); the signature's own verdict is VerifyAt's.
	_, _, refused := v.Notification(body, "diagnose", d.in.Now)
	m, err := v.VerifyAt(f, d.in.Now)
	if err == nil {
		d.r.Verified, d.r.Form, d.r.CertSN = true, m.Form.Name, m.CertSN
	}
	if refused == nil {
		return
	}
	d.r.Reason = notify.ErrorReason(refused)
	status := 403
	switch notify.ErrorCode(refused) {
	case notify.EINVALID:
		status = 400
	case notify.ETOOEARLY:
		status = 425
	}
	if err == nil {
		d.add(LevelError, DiagNotANotification, "the signature verifies, but the gateway still refuses the notification: %s", notify.ErrorMessage(refused))
	}
	d.add(LevelError, DiagGatewayRefuses, "the gateway answers %d fail: %s: %s", status, d.r.Reason, notify.ErrorMessage(refused))
	if d.r.Reason == "missing_sign" {
		d.add(LevelError, DiagMissingSign, "the body has no sign parameter: it is not a signed notification (or sign was lost on the way: check the capture is the whole body)")
	}
}

// matchedKey sets r.Key to the usable key that verified, from the attempts.
func (d *diagnosis) matchedKey(ok []Attempt) {
	for _, a := range ok {
		c := d.candByName(a.Key)
		if c != nil && c.kind == kindUsable && a.Form == d.r.Form && (d.r.CertSN == "" || c.sn == d.r.CertSN) {
			d.r.Key = c.name
			return
		}
	}
}

// decodeSign decodes sign as the gateway does (spaces restored to '+').
func decodeSign(sign string) []byte {
	sig, err := alipay.DecodeSign(sign)
	if err != nil {
		return nil
	}
	return sig
}

// checkSign reports a sign that is not base64 or has the wrong length.
func (d *diagnosis) checkSign(sign string, sig []byte) {
	repaired := alipay.RepairSign(sign)
	if sig == nil {
		text := "sign is not standard base64, even with spaces restored to '+'"
		switch {
		case strings.ContainsAny(repaired, "-_") && !strings.ContainsAny(repaired, "+/"):
			// Handled as a variant below.
		case strings.Contains(repaired, "%"):
			text += ": it holds '%' escapes, so it was URL-encoded twice"
		case len(strings.TrimSpace(repaired))%4 != 0:
			text += fmt.Sprintf(": its length (%d characters) is not a multiple of 4, so characters were lost or added on the way (a '+' dropped instead of sent as %%2B? a line break?)", len(repaired))
		}
		d.add(LevelError, DiagSignNotBase64, "%s", text)
		return
	}
	sizes := map[int]bool{}
	for _, c := range d.cands {
		sizes[c.pub.Size()] = true
	}
	if len(sizes) > 0 && !sizes[len(sig)] {
		var want []string
		for _, c := range d.cands {
			s := fmt.Sprintf("%d bytes (RSA %d)", c.pub.Size(), c.pub.N.BitLen())
			if !slices.Contains(want, s) {
				want = append(want, s)
			}
		}
		d.add(LevelError, DiagSignWrongLength, "sign decodes to %d bytes, but a signature by the configured key(s) is %s: sign was truncated or mangled on the way ('+' dropped or turned into another character, cut at a length limit, ...), or it was made with a key of another size", len(sig), strings.Join(want, " or "))
	}
}

// hashes returns the hashes to try, the one sign_type declares first.
func (d *diagnosis) hashes(f alipay.Form) [2]crypto.Hash {
	if f[alipay.ParamSignType] == "RSA" {
		return [2]crypto.Hash{crypto.SHA1, crypto.SHA256}
	}
	return [2]crypto.Hash{crypto.SHA256, crypto.SHA1}
}

func hashName(h crypto.Hash) string {
	if h == crypto.SHA1 {
		return "SHA1"
	}
	return "SHA256"
}

func (d *diagnosis) alipayCands() []*candidate {
	var out []*candidate
	for _, k := range []int{kindUsable, kindRefused, kindPrivateHalf, kindPastedCert} {
		for _, c := range d.cands {
			if c.kind == k {
				out = append(out, c)
			}
		}
	}
	return out
}

func (d *diagnosis) appCands() []*candidate {
	var out []*candidate
	for _, c := range d.cands {
		if c.kind == kindApp {
			out = append(out, c)
		}
	}
	return out
}

func (d *diagnosis) candByName(name string) *candidate {
	for _, c := range d.cands {
		if c.name == name {
			return c
		}
	}
	return nil
}

// tryAll tries every Alipay key against every content form with hash h, as
// received, recording each attempt, and returns those that verified.
func (d *diagnosis) tryAll(f alipay.Form, sig []byte, h crypto.Hash) []Attempt {
	var ok []Attempt
	for _, form := range alipay.ContentForms(f) {
		digest := alipay.Digest(h, alipay.SignContent(f, form))
		for _, c := range d.alipayCands() {
			a := Attempt{Form: form.Name, Hash: hashName(h), Key: c.name, OK: rsa.VerifyPKCS1v15(c.pub, h, digest, sig) == nil}
			d.r.Attempts = append(d.r.Attempts, a)
			if a.OK {
				ok = append(ok, a)
			}
		}
	}
	return ok
}

// tryVariant tries one variant with the given keys and hash and returns the
// first attempt that verified.
func (d *diagnosis) tryVariant(f alipay.Form, v variant, sig []byte, h crypto.Hash, cands []*candidate) *Attempt {
	if v.sig != nil {
		sig = v.sig
	}
	if sig == nil {
		return nil
	}
	for _, form := range alipay.ContentForms(f) {
		content := alipay.SignContent(f, form)
		if v.content != nil {
			content = v.content(f, form)
		}
		digest := alipay.Digest(h, content)
		for _, c := range cands {
			a := Attempt{Form: form.Name, Variant: v.name, Hash: hashName(h), Key: c.name, OK: rsa.VerifyPKCS1v15(c.pub, h, digest, sig) == nil}
			d.r.Attempts = append(d.r.Attempts, a)
			if a.OK {
				return &a
			}
		}
	}
	return nil
}

// tryVariants tries the senders' and capturers' usual mistakes and reports
// the first that explains the signature.
func (d *diagnosis) tryVariants(f alipay.Form, sig []byte, h crypto.Hash) *Attempt {
	sign := f[alipay.ParamSign]
	var vs []variant
	if hasValue(f, func(v string) bool { return v == "" }) {
		vs = append(vs, variant{name: "empty values dropped", code: DiagEmptyValuesDropped, content: func(f alipay.Form, form alipay.ContentForm) []byte {
			return alipay.SignContent(mapValues(f, func(v string) (string, bool) { return v, v != "" }), form)
		}})
	}
	if hasValue(f, func(v string) bool { return strings.TrimSpace(v) != v }) {
		vs = append(vs, variant{name: "values trimmed", code: DiagValuesTrimmed, content: func(f alipay.Form, form alipay.ContentForm) []byte {
			return alipay.SignContent(mapValues(f, func(v string) (string, bool) { return strings.TrimSpace(v), true }), form)
		}})
		vs = append(vs, variant{name: "values trimmed, empty values dropped", code: DiagValuesTrimmed, content: func(f alipay.Form, form alipay.ContentForm) []byte {
			return alipay.SignContent(mapValues(f, func(v string) (string, bool) { v = strings.TrimSpace(v); return v, v != "" }), form)
		}})
	}
	if hasValue(f, func(v string) bool { return strings.ContainsAny(v, "%+") }) {
		vs = append(vs, variant{name: "values URL-decoded again", code: DiagValuesEncodedTwice, content: func(f alipay.Form, form alipay.ContentForm) []byte {
			return alipay.SignContent(mapValues(f, func(v string) (string, bool) {
				if u, err := url.QueryUnescape(v); err == nil {
					return u, true
				}
				return v, true
			}), form)
		}})
	}
	if gbk, err := alipay.IsGBK(f[alipay.ParamCharset]); err == nil {
		nonASCII := hasValue(f, func(v string) bool {
			for i := 0; i < len(v); i++ {
				if v[i] >= 0x80 {
					return true
				}
			}
			return false
		})
		switch {
		case nonASCII && !gbk && f.ValidUTF8():
			vs = append(vs, variant{name: "content in GBK", code: DiagCharsetMismatch, content: func(f alipay.Form, form alipay.ContentForm) []byte {
				s, err := alipay.ToGBK(string(alipay.SignContent(f, form)))
				if err != nil {
					return nil
				}
				return []byte(s)
			}})
		case nonASCII && gbk:
			vs = append(vs, variant{name: "content in UTF-8", code: DiagCharsetMismatch, content: func(f alipay.Form, form alipay.ContentForm) []byte {
				return []byte(alipay.FromGBK(string(alipay.SignContent(f, form))))
			}})
		}
	}
	if strings.Contains(sign, "%") {
		if u, err := url.QueryUnescape(sign); err == nil {
			if s := decodeSign(u); s != nil {
				vs = append(vs, variant{name: "sign URL-decoded again", code: DiagSignEncodedTwice, sig: s})
			}
		}
	}
	if strings.ContainsAny(sign, "-_") {
		if s, err := base64.URLEncoding.DecodeString(sign); err == nil {
			vs = append(vs, variant{name: "sign as URL-safe base64", code: DiagSignURLSafe, sig: s})
		} else if s, err := base64.RawURLEncoding.DecodeString(sign); err == nil {
			vs = append(vs, variant{name: "sign as URL-safe base64", code: DiagSignURLSafe, sig: s})
		}
	}
	for _, v := range vs {
		if a := d.tryVariant(f, v, sig, h, d.alipayCands()); a != nil {
			d.explainVariant(f, v, a)
			return a
		}
	}
	return nil
}

func decodedTwiceText(a *Attempt) string {
	return fmt.Sprintf("the body you gave was already URL-decoded once (as a log or a framework prints parameters): taken as it is, without decoding, it verifies (%s, %s, %s). Decoding it again changes every value with '%%' or '+'. Give the raw body; and if your own code decodes the body and then decodes values again, decode exactly once (the gateway does).", a.Form, a.Hash, a.Key)
}

// explainVariant reports the variant that verified.
func (d *diagnosis) explainVariant(f alipay.Form, v variant, a *Attempt) {
	var text string
	switch v.code {
	case DiagEmptyValuesDropped:
		var empty []string
		for k, val := range f {
			if val == "" && k != alipay.ParamSign {
				empty = append(empty, k)
			}
		}
		slices.Sort(empty)
		text = fmt.Sprintf("it verifies once the empty parameters (%s) are left out of the signed string: the sender's SDK drops empty values when it signs (gopay does), while Alipay and its official SDKs keep them (key=&...). The gateway follows Alipay, so the sender must sign every parameter it sends, empty or not (or not send the empty ones).", strings.Join(empty, ", "))
	case DiagValuesTrimmed:
		text = "it verifies once values are trimmed of surrounding white space (" + v.name + "): the sender's signer trims values (smartwalle/nsign's default encoder does) while sending them untrimmed. Alipay signs values exactly as sent."
	case DiagValuesEncodedTwice:
		text = "it verifies once the values are URL-decoded a second time: the sender signed the values but URL-encoded them twice in the body (so '%' escapes remain after one decoding). The gateway decodes exactly once, as Alipay's SDKs do: the sender must encode once."
	case DiagCharsetMismatch:
		text = fmt.Sprintf("it verifies with the signed string converted to another charset (%s): the sender signed in one charset and sent in another (charset=%q). Alipay signs the bytes in the charset it declares.", v.name, f[alipay.ParamCharset])
	case DiagSignEncodedTwice:
		text = "it verifies once sign is URL-decoded again: the sender URL-encoded sign twice (%2B became %252B). Encode exactly once."
	case DiagSignURLSafe:
		text = "it verifies with sign read as URL-safe base64 ('-' and '_' for '+' and '/'): the sender encoded the signature with the wrong alphabet; Alipay uses standard base64."
	}
	d.add(LevelError, v.code, "%s [%s, %s, %s]", text, a.Form, a.Hash, a.Key)
	d.keyKindNotes(d.candByName(a.Key))
}

// keyKindNotes adds what a verifying key that is not usable means.
func (d *diagnosis) keyKindNotes(c *candidate) {
	if c == nil {
		return
	}
	switch c.kind {
	case kindRefused:
		d.add(LevelError, DiagRefusedCertVerifies, "it verifies only with %s, which the gateway refuses to load (%s)", c.name, c.why)
	case kindPrivateHalf:
		d.add(LevelError, DiagPrivateHalfVerifies, "it verifies with the public half of the private key in %s: configure that key's public key instead (and remove the private key from the gateway's settings)", c.src)
	case kindPastedCert:
		d.add(LevelError, DiagPastedCertVerifies, "it verifies with the key of the cert in %s: configure certificate mode (ALIPAY_ROOT_CERT_FILE + ALIPAY_PUBLIC_CERT_FILE=%s) instead of a public key", c.src, c.src)
	}
}

// explainCrypto explains a signature that is cryptographically good with a
// configured (or refused, or misconfigured) key but that the gateway
// refuses.
func (d *diagnosis) explainCrypto(f alipay.Form, ok []Attempt) {
	// Prefer an attempt with a usable key.
	best := ok[0]
	for _, a := range ok {
		if c := d.candByName(a.Key); c != nil && c.kind == kindUsable {
			best = a
			break
		}
	}
	c := d.candByName(best.Key)
	st := f[alipay.ParamSignType]
	where := fmt.Sprintf("[%s, %s, %s]", best.Form, best.Hash, best.Key)
	switch {
	case best.Hash == "SHA1" && st == "RSA":
		if c.kind == kindUsable && !d.in.AllowRSA1 {
			d.add(LevelError, DiagSHA1Refused, "sign_type is RSA: the signature is a genuine SHA1withRSA one %s, refused because RSA (SHA1) is not allowed for this app. Alipay signs RSA2 for apps set to RSA2: set the app to RSA2 in the console; set ALIPAY_ALLOW_RSA1=true (--allow-rsa1) only if the app really is a legacy RSA one.", where)
		}
	case best.Hash == "SHA1":
		d.add(LevelError, DiagSHA1DeclaredRSA2, "sign_type is %q, but the signature is SHA1withRSA %s: the sender labels its signatures RSA2 while hashing with SHA1. The gateway takes the hash from sign_type (RSA2 means SHA256) and never downgrades, so it refuses this even with RSA1 allowed: the sender must sign SHA256withRSA.", st, where)
	case st == "RSA":
		d.add(LevelError, DiagSHA256DeclaredRSA, "sign_type is RSA (SHA1), but the signature is SHA256withRSA %s: the sender must send sign_type=RSA2.", where)
	case st != "" && st != "RSA2":
		d.add(LevelError, DiagSignTypeUnsupported, "sign_type is %q; the signature is a good SHA256withRSA one %s, but the gateway knows only RSA2 (exactly, upper case) and RSA", st, where)
	}
	if c != nil && c.kind == kindUsable && d.r.Reason == "unknown_cert_sn" {
		d.unknownCertSN(f, c)
	}
	if c != nil && c.kind != kindUsable {
		d.keyKindNotes(c)
	}
	if d.r.Reason == "unknown_cert_sn" && !d.r.Has(DiagUnknownCertSN) {
		d.unknownCertSN(f, nil)
	}
	d.contentFormNote(best.Form, true)
}

// unknownCertSN reports an alipay_cert_sn none of the usable certs has;
// verifier is the usable cert that verifies the signature anyway, if any.
func (d *diagnosis) unknownCertSN(f alipay.Form, verifier *candidate) {
	sn := f[alipay.ParamCertSN]
	var sns []string
	for _, k := range d.usable {
		sns = append(sns, k.SN)
	}
	text := fmt.Sprintf("alipay_cert_sn %q is not the SN of any configured Alipay cert (configured: %s)", sn, strings.Join(sns, ", "))
	switch {
	case verifier != nil:
		text += fmt.Sprintf(", yet %s verifies the signature: the sender put the SN of another cert, or computes SNs differently (Alipay's SN is md5 of the issuer DN, most specific first, followed by the serial number in decimal; `alipayctl sn FILE` prints it)", verifier.name)
	case d.refusedSN[sn] != "":
		text += fmt.Sprintf(": it is the SN of a configured cert the gateway refuses (%s)", d.refusedSN[sn])
	case sn == d.rootSN && sn != "":
		text += ": it is the root bundle's SN, which goes into outbound calls (alipay_root_cert_sn), not into notifications"
	default:
		text += ". After a rotation Alipay signs with its new cert: download the new alipayCertPublicKey_RSA2.crt from the console and configure it next to the old one (ALIPAY_PUBLIC_CERT_FILE=old.crt,new.crt)."
	}
	d.add(LevelError, DiagUnknownCertSN, "%s", text)
}

func (d *diagnosis) contentFormNote(name string, failed bool) {
	var text string
	switch name {
	case alipay.FormV1.Name:
		text = "content form v1: sign_type left out of the signed string (as Alipay's payment notifications and the Java SDK's rsaCheckV1)"
	case alipay.FormV2.Name:
		text = "content form v2: sign_type kept in the signed string (as the Java SDK's rsaCheckV2 and the Node SDK try first)"
	case alipay.FormV1CertSN.Name:
		text = "content form v1+cert_sn: sign_type left out, alipay_cert_sn kept in the signed string"
	case alipay.FormV2CertSN.Name:
		text = "content form v2+cert_sn: sign_type and alipay_cert_sn both kept in the signed string"
	default:
		return
	}
	if failed {
		text = "the signature matched " + text + "; the gateway tries every form"
	} else {
		text = "verified with " + text + "; the gateway accepts every form"
	}
	d.add(LevelInfo, DiagContentForm, "%s", text)
}

// explainVerified adds what is worth knowing about a notification that
// verifies.
func (d *diagnosis) explainVerified(f alipay.Form) {
	d.contentFormNote(d.r.Form, false)
	if f[alipay.ParamSignType] == "RSA" {
		d.add(LevelWarning, DiagSHA1Allowed, "sign_type is RSA (SHA1withRSA): accepted only because RSA1 is allowed for this app (ALIPAY_ALLOW_RSA1); move the app to RSA2")
	}
	if _, ok := f[alipay.ParamCertSN]; ok && !d.certMode {
		d.add(LevelInfo, DiagCertSNIgnored, "alipay_cert_sn %q is present but the gateway is in public-key mode: it is ignored", f[alipay.ParamCertSN])
	}
	if _, ok := f[alipay.ParamCertSN]; !ok && d.certMode {
		d.add(LevelInfo, DiagNoCertSN, "no alipay_cert_sn: in cert mode the gateway tries every configured cert")
	}
	if hasValue(f, func(v string) bool { return strings.Contains(v, "%") }) {
		d.add(LevelInfo, DiagPercentInValues, "some values hold '%%' after decoding: decode the body exactly once (as here and in the gateway); code that decodes values again breaks the signature")
	}
}

// wrongKey reports a signature that verifies with no key, no form, no hash
// and no variant.
func (d *diagnosis) wrongKey(f alipay.Form, sig []byte) {
	if d.r.Reason == "unknown_cert_sn" {
		d.unknownCertSN(f, nil)
	}
	if sig == nil || len(d.cands) == 0 {
		return
	}
	var tried []string
	for _, c := range d.alipayCands() {
		tried = append(tried, c.name)
	}
	forms := "V1/V2"
	if _, ok := f[alipay.ParamCertSN]; ok {
		forms += ", with and without alipay_cert_sn"
	}
	text := fmt.Sprintf("the signature verifies with none of the keys (%s), in any content form (%s), with either hash (SHA256/SHA1) or any usual sender mistake: it was signed with another key, or the notification was altered after it was signed.", strings.Join(tried, "; "), forms)
	if d.certMode {
		text += " If the configured cert is your app's cert (appCertPublicKey_<appid>.crt) rather than Alipay's (alipayCertPublicKey_RSA2.crt), configure Alipay's. After a cert rotation, configure both the old and the new Alipay cert (ALIPAY_PUBLIC_CERT_FILE=old.crt,new.crt)."
	} else if !d.r.Has(DiagKeyIsAppKey) && len(d.usable) > 0 {
		text += " If the configured key is your app's public key (应用公钥) rather than Alipay's public key (支付宝公钥), replace it with 支付宝公钥 from the console (接口加签方式): the two are shown side by side, and only Alipay's verifies notifications (give the app's key with --app-public-key to check)."
	}
	d.add(LevelError, DiagWrongKey, "%s", text)
}

func hasValue(f alipay.Form, pred func(string) bool) bool {
	for k, v := range f {
		if k != alipay.ParamSign && pred(v) {
			return true
		}
	}
	return false
}

// mapValues returns a copy of f with each value (but sign) mapped; a value
// mapped to false is dropped.
func mapValues(f alipay.Form, fn func(string) (string, bool)) alipay.Form {
	out := make(alipay.Form, len(f))
	for k, v := range f {
		if k == alipay.ParamSign {
			out[k] = v
			continue
		}
		if nv, keep := fn(v); keep {
			out[k] = nv
		}
	}
	return out
}

// splitRaw splits a body on '&' and '=' without URL-decoding, for a body
// that was decoded once already. It returns nil for a body that does not
// split into distinct valid UTF-8 keys.
func splitRaw(body []byte) alipay.Form {
	f := alipay.Form{}
	for _, kv := range strings.Split(string(body), "&") {
		if kv == "" {
			continue
		}
		k, v, _ := strings.Cut(kv, "=")
		if _, dup := f[k]; dup || k == "" || !utf8.ValidString(k) {
			return nil
		}
		f[k] = v
	}
	if len(f) == 0 {
		return nil
	}
	return f
}
