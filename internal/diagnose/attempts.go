package diagnose

import (
	"crypto"
	"crypto/rsa"

	"github.com/alipay-notify-gateway/gateway/internal/alipay"
)

// decodeSign decodes sign as the gateway does (spaces restored to '+').
func decodeSign(sign string) []byte {
	sig, err := alipay.DecodeSign(sign)
	if err != nil {
		return nil
	}
	return sig
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
