package diagnose

import (
	"crypto"
	"encoding/base64"
	"fmt"
	"net/url"
	"slices"
	"strings"
	"unicode/utf8"

	"github.com/alipay-notify-gateway/gateway/internal/alipay"
)

// variant is an alteration of the notification tried when it does not
// verify as received: a different content, or a different signature.
type variant struct {
	name    string
	code    string
	content func(alipay.Form, alipay.ContentForm) []byte // nil: alipay.SignContent
	sig     []byte                                       // nil: the received signature
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
