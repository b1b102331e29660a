package diagnose

import (
	"fmt"
	"strings"

	"github.com/alipay-notify-gateway/gateway/internal/alipay"
)

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
