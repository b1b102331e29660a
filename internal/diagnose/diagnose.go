// Package diagnose explains why a notification does not verify: it is the
// failed-verify diagnosis behind alipayctl verify. Given a body as captured
// and one app's key settings (read, not yet checked), Diagnose reports the
// verdict of the gateway's own verifier (internal/alipay) and, when the
// gateway refuses the notification, what is most likely wrong: it tries
// every configured key and cert against every content form and both
// hashes, then the usual mistakes of senders, of whoever captured the body
// and of the configuration, and says what it found as findings with stable
// codes. The verdict is always alipay's: the other attempts only explain
// it. In the gateway only the ops console's verify page uses it
// (internal/console), never the intake path.
package diagnose

import (
	"bytes"
	"fmt"
	"slices"
	"strings"
	"time"

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

// diagnosis is one run of Diagnose: its input, the report it builds, and
// what it read of the keys (the candidates it tries, the keys the gateway
// would load, and why it would refuse the others).
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
