package diagnose

import (
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"time"

	"github.com/alipay-notify-gateway/gateway/internal/alipay"
)

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
	c, err := alipay.ParseLeafCert(data)
	if err != nil {
		return nil
	}
	return c
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
