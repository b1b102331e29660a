package alipay

import (
	"bytes"
	"crypto"
	"crypto/rsa"
	"encoding/base64"
	"net/url"
	"sort"
	"strings"
	"unicode/utf8"

	"github.com/alipay-notify-gateway/gateway/internal/notify"
)

// Form is a notification's parameters as received in the body, decoded from
// URL encoding once, each value still in the body's charset.
type Form map[string]string

// Parameter names with a role in verification.
const (
	ParamSign        = "sign"
	ParamSignType    = "sign_type"
	ParamCertSN      = "alipay_cert_sn"
	ParamAppID       = "app_id"
	ParamNotifyID    = "notify_id"
	ParamMsgMethod   = "msg_method"
	ParamNotifyType  = "notify_type"
	ParamCharset     = "charset"
	ParamBizContent  = "biz_content"
	ParamEncryptType = "encrypt_type"
	ParamTimestamp   = "utc_timestamp"
	ParamNotifyTime  = "notify_time"
	ParamVersion     = "version"
	ParamAuthAppID   = "auth_app_id"
	ParamStatus      = "status"
)

// ParseForm parses an application/x-www-form-urlencoded body. It returns an
// EINVALID *notify.Error for an empty body (or one with no parameter), a
// body of more than MaxParams parameters (counted before parsing), a body
// that does not decode, a parameter given twice (which one was signed would
// be a guess), and a NUL byte (Postgres cannot store one).
func ParseForm(body []byte) (Form, error) {
	if len(body) == 0 {
		return nil, notify.Errorf(notify.EINVALID, "empty_body", "empty body")
	}
	if n := bytes.Count(body, []byte{'&'}) + 1; n > MaxParams {
		return nil, notify.Errorf(notify.EINVALID, "too_many_parameters", "body holds %d parameters or more; a notification has at most %d", n, MaxParams)
	}
	values, err := url.ParseQuery(string(body))
	if err != nil {
		return nil, notify.Errorf(notify.EINVALID, "malformed_form", "body is not a URL-encoded form: %s", notify.Clip(err.Error()))
	}
	if len(values) == 0 {
		return nil, notify.Errorf(notify.EINVALID, "empty_body", "body holds no parameter")
	}
	f := make(Form, len(values))
	for k, vs := range values {
		if len(vs) != 1 {
			return nil, notify.Errorf(notify.EINVALID, "duplicate_parameter", "parameter %q appears %d times", notify.Clip(k), len(vs))
		}
		if strings.IndexByte(k, 0) >= 0 || strings.IndexByte(vs[0], 0) >= 0 {
			return nil, notify.Errorf(notify.EINVALID, "malformed_form", "parameter %q holds a NUL byte", notify.Clip(k))
		}
		f[k] = vs[0]
	}
	return f, nil
}

// ContentForm is one way to build the signed content. Alipay's SDKs differ
// on whether sign_type is signed (V1 drops it, V2 keeps it); whether
// alipay_cert_sn is signed is not documented, so both are tried.
type ContentForm struct {
	Name         string
	KeepSignType bool
	KeepCertSN   bool
}

// The content forms, in the order they are tried.
var (
	FormV1       = ContentForm{Name: "v1"}
	FormV2       = ContentForm{Name: "v2", KeepSignType: true}
	FormV1CertSN = ContentForm{Name: "v1+cert_sn", KeepCertSN: true}
	FormV2CertSN = ContentForm{Name: "v2+cert_sn", KeepSignType: true, KeepCertSN: true}
)

// ContentForms returns the forms to try for f: V1 then V2, and when f
// carries alipay_cert_sn, both again with it signed.
func ContentForms(f Form) []ContentForm {
	if _, ok := f[ParamCertSN]; ok {
		return []ContentForm{FormV1, FormV2, FormV1CertSN, FormV2CertSN}
	}
	return []ContentForm{FormV1, FormV2}
}

// SignContent returns the content Alipay signs, as the official SDKs build
// it: every parameter but sign (and sign_type and alipay_cert_sn unless the
// form keeps them), empty values kept, sorted by key in byte order, joined
// as key=value with &. Values are used as they are, never trimmed.
func SignContent(f Form, form ContentForm) []byte {
	return signContent(f, sortedKeys(f), form)
}

// sortedKeys returns f's keys but sign, sorted in byte order: the order of
// every content form.
func sortedKeys(f Form) []string {
	keys := make([]string, 0, len(f))
	for k := range f {
		if k != ParamSign {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	return keys
}

// signContent is SignContent over keys, f's keys as sortedKeys returns
// them, so that several forms share one sort.
func signContent(f Form, keys []string, form ContentForm) []byte {
	size := 0
	for _, k := range keys {
		size += len(k) + len(f[k]) + 2
	}
	b := make([]byte, 0, size)
	for _, k := range keys {
		switch {
		case k == ParamSignType && !form.KeepSignType, k == ParamCertSN && !form.KeepCertSN:
			continue
		}
		if len(b) > 0 {
			b = append(b, '&')
		}
		b = append(b, k...)
		b = append(b, '=')
		b = append(b, f[k]...)
	}
	return b
}

// RepairSign restores the '+' characters of a base64 signature that a sender
// did not URL-encode (they decode to spaces). Safe: the signature is still
// checked cryptographically.
func RepairSign(sign string) string {
	return strings.ReplaceAll(sign, " ", "+")
}

// DecodeSign decodes sign as the gateway does before it verifies: spaces
// restored to '+' (RepairSign), then standard padded base64. It returns
// base64's error (a base64.CorruptInputError) when sign does not decode.
// It does not bound sign's length: the Verifier refuses a sign over
// MaxSignLen before decoding it.
func DecodeSign(sign string) ([]byte, error) {
	return base64.StdEncoding.DecodeString(RepairSign(sign))
}

// ValidUTF8 reports whether every key and value of f is valid UTF-8, as
// the gateway requires of a body whose charset is not GBK. It returns no
// error.
func (f Form) ValidUTF8() bool {
	return validUTF8(f)
}

// validUTF8 reports whether every key and value of f is valid UTF-8.
func validUTF8(f Form) bool {
	for k, v := range f {
		if !utf8.ValidString(k) || !utf8.ValidString(v) {
			return false
		}
	}
	return true
}

// Sign signs f as Alipay does, over the content form, with SHA256withRSA
// (or SHA1withRSA for hash crypto.SHA1), and returns f with sign set. For
// tests, the CLI and the load generator: the gateway itself only verifies.
func Sign(f Form, key *rsa.PrivateKey, form ContentForm, hash crypto.Hash) (Form, error) {
	out := make(Form, len(f)+1)
	for k, v := range f {
		out[k] = v
	}
	delete(out, ParamSign)
	sig, err := rsa.SignPKCS1v15(nil, key, hash, digestOf(hash, SignContent(out, form)))
	if err != nil {
		return nil, err
	}
	out[ParamSign] = base64.StdEncoding.EncodeToString(sig)
	return out, nil
}

// Encode returns f as an application/x-www-form-urlencoded body.
func (f Form) Encode() string {
	v := make(url.Values, len(f))
	for k, val := range f {
		v.Set(k, val)
	}
	return v.Encode()
}
