package alipay

import (
	"crypto/aes"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/smartwalle/ncrypto"
	"golang.org/x/text/encoding/simplifiedchinese"

	"github.com/alipay-notify-gateway/gateway/internal/notify"
	"github.com/alipay-notify-gateway/gateway/internal/redact"
)

// Notification parses, verifies and decodes one notification body: the
// whole intake check, cheapest first. It returns the notification ready to
// store, and how it verified. Errors are *notify.Error: EINVALID for a
// malformed form, a parameter whose name or identifier value has not the
// shape Alipay gives it (see checkShapes), a missing parameter or an
// unknown charset; EUNVERIFIED as verifyAt returns; ETOOEARLY for a
// verified notification dated more than the allowed skew ahead of now. A
// verified notification that cannot be decoded (encrypted with no key) is
// returned with Failure set, never as an error: it must be kept.
func (v *Verifier) Notification(body []byte, channel string, now time.Time) (*notify.Notification, *Match, error) {
	f, err := ParseForm(body)
	if err != nil {
		return nil, nil, err
	}
	return v.FormNotification(f, channel, now)
}

// FormNotification is Notification for a body parsed already (ParseForm),
// for a caller that also needs the form (to name a refused notification in
// its log line without parsing the body twice).
func (v *Verifier) FormNotification(f Form, channel string, now time.Time) (*notify.Notification, *Match, error) {
	if err := checkShapes(f); err != nil {
		return nil, nil, err
	}
	if err := checkRequired(f); err != nil {
		return nil, nil, err
	}
	gbk, err := isGBK(f[ParamCharset])
	if err != nil {
		return nil, nil, err
	}
	if !gbk && !validUTF8(f) {
		return nil, nil, notify.Errorf(notify.EINVALID, "bad_charset", "parameters are not valid UTF-8 (charset %q)", f[ParamCharset])
	}
	ts, what, err := timestampOf(f)
	if err != nil {
		return nil, nil, err
	}
	m, err := v.verifyAt(f, now)
	if err != nil {
		return nil, nil, err
	}
	if err := v.checkTime(what, ts, now); err != nil {
		return nil, m, err
	}
	params := f
	if gbk {
		params = make(Form, len(f))
		for k, val := range f {
			params[k] = fromGBK(val)
		}
	}
	n := &notify.Notification{
		AppID:         params[ParamAppID],
		NotifyID:      params[ParamNotifyID],
		Method:        methodOf(params),
		UTCTimestamp:  ts,
		Params:        params,
		Channel:       channel,
		ContentForm:   m.Form.Name,
		ContentDigest: m.Digest[:],
		CertSN:        m.CertSN,
		ReceivedAt:    now,
	}
	v.decodeBiz(m.App, n, f[ParamBizContent], gbk)
	return n, m, nil
}

// Redecode decodes a stored notification's biz_content again from its stored
// parameters, with the app's current settings: after an encryption key was
// configured, a notification kept as failed becomes readable. It clears
// n.Failure when it succeeds.
func (v *Verifier) Redecode(n *notify.Notification) {
	app, ok := v.apps[n.AppID]
	if !ok {
		n.Failure = fmt.Sprintf("app %s is no longer configured", n.AppID)
		return
	}
	n.Failure = ""
	// Stored parameters are UTF-8 already; an encrypted biz_content is
	// base64, and its plaintext is still in the original charset.
	gbk, _ := isGBK(n.Params[ParamCharset])
	raw := n.Params[ParamBizContent]
	if n.Params[ParamEncryptType] == "" {
		gbk = false
	}
	v.decodeBiz(app, n, raw, gbk)
}

// decodeBiz sets n.BizContent (and n.Params' biz_content, n.Secrets,
// n.Encrypted, n.Failure) from raw, biz_content as received.
func (v *Verifier) decodeBiz(app *App, n *notify.Notification, raw string, gbk bool) {
	plain := raw
	if et := n.Params[ParamEncryptType]; et != "" {
		n.Encrypted = true
		var err error
		plain, err = decrypt(app, et, raw)
		if err != nil {
			// Kept as received (ciphertext) with the reason.
			n.BizContent = n.Params[ParamBizContent]
			n.Failure = err.Error()
			return
		}
	}
	if gbk {
		plain = fromGBK(plain)
	}
	biz, secrets := redact.Secrets(plain)
	n.BizContent = biz
	n.Secrets = secrets
	if !n.Encrypted && secrets != nil {
		// The stored parameters must not hold the secrets in clear either.
		params := make(map[string]string, len(n.Params))
		for k, val := range n.Params {
			params[k] = val
		}
		params[ParamBizContent] = biz
		n.Params = params
	}
}

// decrypt decrypts an encrypted biz_content: base64 AES-CBC, zero IV,
// PKCS#7 padding, under the app's content-encryption key.
func decrypt(app *App, encryptType, b64 string) (string, error) {
	if encryptType != "AES" {
		return "", fmt.Errorf("encrypt_type %q is not supported", encryptType)
	}
	if len(app.EncryptKey) == 0 {
		return "", fmt.Errorf("biz_content is encrypted and app %s has no ALIPAY_ENCRYPT_KEY", app.ID)
	}
	ct, err := base64.StdEncoding.DecodeString(strings.TrimSpace(b64))
	if err != nil {
		return "", errors.New("encrypted biz_content is not base64")
	}
	if len(ct) == 0 || len(ct)%aes.BlockSize != 0 {
		return "", errors.New("encrypted biz_content is not whole AES blocks")
	}
	pt, err := ncrypto.AESCBCDecrypt(ct, app.EncryptKey, make([]byte, aes.BlockSize), ncrypto.PKCS7Padding{})
	if err != nil {
		return "", errors.New("biz_content does not decrypt with the app's ALIPAY_ENCRYPT_KEY")
	}
	return string(pt), nil
}

// EncryptBiz encrypts plaintext as Alipay does for encrypt_type=AES. For
// tests and the CLI.
func EncryptBiz(key []byte, plaintext string) (string, error) {
	ct, err := ncrypto.AESCBCEncrypt([]byte(plaintext), key, make([]byte, aes.BlockSize), ncrypto.PKCS7Padding{})
	if err != nil {
		return "", err
	}
	return base64.StdEncoding.EncodeToString(ct), nil
}

// IsGBK reports whether a charset parameter names GBK (GBK, GB2312 or
// GB18030, in any case) rather than UTF-8 (UTF-8, UTF8 or empty), as the
// gateway reads it. It returns an EINVALID *notify.Error (bad_charset) for
// a charset that is neither.
func IsGBK(charset string) (bool, error) {
	return isGBK(charset)
}

// isGBK reports whether charset names GBK (or a GB superset). It returns an
// EINVALID *notify.Error for a charset that is neither UTF-8 nor GBK.
func isGBK(charset string) (bool, error) {
	switch strings.ToUpper(strings.TrimSpace(charset)) {
	case "", "UTF-8", "UTF8":
		return false, nil
	case "GBK", "GB2312", "GB18030":
		return true, nil
	}
	return false, notify.Errorf(notify.EINVALID, "bad_charset", "charset %q is not supported", charset)
}

// FromGBK converts GBK (GB18030) bytes to UTF-8, as the gateway converts
// a GBK body's parameters before it stores them. It returns no error: when
// s does not decode, it returns s with its invalid UTF-8 replaced by U+FFFD.
// ToGBK is its inverse.
func FromGBK(s string) string {
	return fromGBK(s)
}

// fromGBK converts GBK (GB18030) bytes to UTF-8.
func fromGBK(s string) string {
	out, err := simplifiedchinese.GB18030.NewDecoder().String(s)
	if err != nil {
		return strings.ToValidUTF8(s, "\uFFFD")
	}
	return out
}

// ToGBK converts UTF-8 to GBK bytes. For tests and the CLI.
func ToGBK(s string) (string, error) {
	return simplifiedchinese.GBK.NewEncoder().String(s)
}

// Method returns the notification's method as the gateway names it:
// msg_method, or notify_type for the older-style notifications that carry
// none ("" when f has neither). It returns no error.
func (f Form) Method() string {
	return methodOf(f)
}

// methodOf returns msg_method, or notify_type for the older-style
// notifications that carry none.
func methodOf(f Form) string {
	if m := f[ParamMsgMethod]; m != "" {
		return m
	}
	return f[ParamNotifyType]
}

// ChinaTime is Alipay's local time (UTC+8, no daylight saving), in which it
// writes notify_time and its OpenAPI timestamps: a fixed zone, so that a
// container without tzdata reads and writes them right.
var ChinaTime = time.FixedZone("CST", 8*3600)

// timestampOf returns utc_timestamp in ms or, for the older style,
// notify_time ("2006-01-02 15:04:05" in China time), and the name of the
// one it read. It returns an EINVALID *notify.Error when either is present
// but unreadable, and 0 when neither is.
func timestampOf(f Form) (int64, string, error) {
	if s, ok := f[ParamTimestamp]; ok && s != "" {
		ms, err := strconv.ParseInt(s, 10, 64)
		if err != nil || ms < 0 {
			return 0, "", notify.Errorf(notify.EINVALID, "bad_parameter", "utc_timestamp %q is not milliseconds since the epoch", notify.Clip(s))
		}
		return ms, ParamTimestamp, nil
	}
	if s := f[ParamNotifyTime]; s != "" {
		t, err := time.ParseInLocation(time.DateTime, s, ChinaTime)
		if err != nil {
			return 0, "", notify.Errorf(notify.EINVALID, "bad_parameter", "notify_time %q is not yyyy-MM-dd HH:mm:ss", notify.Clip(s))
		}
		return t.UnixMilli(), ParamNotifyTime, nil
	}
	return 0, "", nil
}
