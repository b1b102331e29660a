package alipay

import (
	"bytes"
	"crypto"
	"crypto/sha256"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/alipay-notify-gateway/gateway/internal/notify"
)

// The WebSocket channel (长连接) of Alipay's message service signs each
// message's data object, {"header":{"appId":"...","msgApi":"..."},
// "content":{...}}: x-sign covers its exact text as sent. The frame
// protocol (header lines, the JSON message, acknowledgements, registering)
// is internal/msgchannel's; here is what verifies a message once its frame
// is read.

// ContentFormChannel names, in a stored notification's content_form, the
// signed content of a channel message: the data object's exact text.
const ContentFormChannel = "channel_data"

// ChannelMessage is what a CONSUME frame of the channel carries, as read
// from it: the protocol object's fields (outside what x-sign covers but
// Data), and Data, the exact text of the data object, with its header's
// appId and msgApi and the exact text of its content object.
type ChannelMessage struct {
	MsgID     string // x-msgId
	Timestamp string // x-timestamp as sent: milliseconds since the epoch
	Version   string // x-version
	Charset   string // x-charset: the charset the data was signed in
	SignType  string // x-signType
	Sign      string // x-sign
	Data      []byte // nil when the message has none
	AppID     string // data.header.appId
	MsgAPI    string // data.header.msgApi
	Content   []byte // data.content's exact text; nil when absent
}

// VerifyChannelMessage verifies and decodes one message received on appID's
// connection: the channel's whole intake check, the counterpart of
// Notification. The notification's notify_id is x-msgId, msg_method is
// msgApi, utc_timestamp is x-timestamp, app_id is the header's appId (which
// must be appID) and biz_content the exact text of content, secrets
// redacted. Errors are *notify.Error: EINVALID for a missing field, or an
// x-msgId, msgApi or x-timestamp not of its shape; EUNVERIFIED for an
// unknown app, a missing, undecodable or wrong x-sign, a refused
// x-signType, or an appId that is not appID; ETOOEARLY for an x-timestamp
// more than the allowed skew ahead of now.
func (v *Verifier) VerifyChannelMessage(appID string, m ChannelMessage, now time.Time) (*notify.Notification, error) {
	if m.MsgID == "" {
		return nil, notify.Errorf(notify.EINVALID, "missing_parameter", "x-msgId is missing")
	}
	if !ValidNotifyID(m.MsgID) {
		return nil, notify.Errorf(notify.EINVALID, "bad_parameter", "x-msgId %q is not an Alipay message id (letters, digits, '-', '_' or '.', at most 64)", notify.Clip(m.MsgID))
	}
	if m.Data == nil {
		return nil, notify.Errorf(notify.EINVALID, "missing_parameter", "data is missing")
	}
	app, ok := v.apps[appID]
	if !ok {
		return nil, notify.Errorf(notify.EUNVERIFIED, "unknown_app", "app_id %q is not a configured app", notify.Clip(appID))
	}
	gbk, err := isGBK(m.Charset)
	if err != nil {
		return nil, err
	}
	certSN, digest, err := app.verifyChannel(m.Data, m.Sign, m.SignType, gbk, now)
	if err != nil {
		return nil, err
	}
	// Signed, so Alipay's: now the fields it signed can be trusted.
	if m.AppID != appID {
		return nil, notify.Errorf(notify.EUNVERIFIED, "app_mismatch", "message for app %q arrived on the channel of app %s", notify.Clip(m.AppID), appID)
	}
	if m.MsgAPI == "" {
		return nil, notify.Errorf(notify.EINVALID, "missing_parameter", "data.header.msgApi is missing")
	}
	if !dotted(m.MsgAPI) || len(m.MsgAPI) > identifiers[ParamMsgMethod].max {
		return nil, notify.Errorf(notify.EINVALID, "bad_parameter", "data.header.msgApi %q is not a method name", notify.Clip(m.MsgAPI))
	}
	// x-timestamp is outside what x-sign covers: bounded like any time, and
	// the digest of the signed data (not x-msgId) says whether the inbox
	// has this message already.
	var ts int64
	if m.Timestamp != "" {
		ts, err = strconv.ParseInt(m.Timestamp, 10, 64)
		if err != nil || ts < 0 || len(m.Timestamp) > identifiers[ParamTimestamp].max {
			return nil, notify.Errorf(notify.EINVALID, "bad_parameter", "x-timestamp %q is not milliseconds since the epoch", notify.Clip(m.Timestamp))
		}
	}
	if err := v.checkTime("x-timestamp", ts, now); err != nil {
		return nil, err
	}
	content := string(m.Content)
	params := map[string]string{
		ParamAppID:      m.AppID,
		ParamNotifyID:   m.MsgID,
		ParamMsgMethod:  m.MsgAPI,
		ParamBizContent: content,
		ParamCharset:    m.Charset,
		ParamSignType:   m.SignType,
	}
	if m.Timestamp != "" {
		params[ParamTimestamp] = m.Timestamp
	}
	if m.Version != "" {
		params[ParamVersion] = m.Version
	}
	n := &notify.Notification{
		AppID:         m.AppID,
		NotifyID:      m.MsgID,
		Method:        m.MsgAPI,
		UTCTimestamp:  ts,
		Params:        params,
		Channel:       notify.ChannelWebSocket,
		ContentForm:   ContentFormChannel,
		ContentDigest: digest[:],
		CertSN:        certSN,
		ReceivedAt:    now,
	}
	// A text frame is UTF-8 whatever x-charset says: only the signed bytes
	// were in x-charset.
	v.decodeBiz(app, n, content, false)
	return n, nil
}

// verifyChannel checks sign over data with a's keys valid at now, and
// returns the SN of the cert that verified (cert mode) and the SHA-256 of
// the signed bytes.
func (a *App) verifyChannel(data []byte, sign, signType string, gbk bool, now time.Time) (string, [sha256.Size]byte, error) {
	var digest [sha256.Size]byte
	if sign == "" {
		return "", digest, notify.Errorf(notify.EUNVERIFIED, "missing_sign", "x-sign is missing")
	}
	if len(sign) > MaxSignLen {
		return "", digest, notify.Errorf(notify.EUNVERIFIED, "bad_signature", "x-sign is %d characters long; a signature is at most %d", len(sign), MaxSignLen)
	}
	sig, err := DecodeSign(sign)
	if err != nil {
		return "", digest, notify.Errorf(notify.EUNVERIFIED, "bad_signature", "x-sign is not base64")
	}
	if signType == "" {
		return "", digest, notify.Errorf(notify.EINVALID, "missing_parameter", "x-signType is missing")
	}
	hashID, err := a.hashFor(signType)
	if err != nil {
		return "", digest, err
	}
	keys, err := a.keysFor(nil, now)
	if err != nil {
		return "", digest, err
	}
	content := data
	if gbk {
		s, err := ToGBK(string(data))
		if err != nil {
			return "", digest, notify.Errorf(notify.EUNVERIFIED, "bad_signature", "data cannot be encoded in x-charset GBK")
		}
		content = []byte(s)
	}
	var want []byte // the content's digest, once a signature opens
	for _, k := range keys {
		got := pkcs1Digest(k.open(sig), hashID)
		if got == nil {
			continue
		}
		if want == nil {
			want = digestOf(hashID, content)
		}
		if bytes.Equal(got, want) {
			if hashID == crypto.SHA256 {
				copy(digest[:], want)
			} else {
				digest = sha256.Sum256(content)
			}
			return k.SN, digest, nil
		}
	}
	return "", digest, notify.Errorf(notify.EUNVERIFIED, "bad_signature", "signature does not verify with the key(s) of app %s", a.ID)
}

// VerifyText checks that sign (base64) is an SHA256withRSA signature of
// text, byte for byte, by one of appID's Alipay keys: how Alipay signs the
// answers of the channel's register.do. It returns an error naming what is
// wrong: an unknown app, a sign that is missing or not base64, or one that
// verifies with none of the keys.
func (v *Verifier) VerifyText(appID string, text []byte, sign string) error {
	app, ok := v.apps[appID]
	if !ok {
		return fmt.Errorf("app_id %q is not a configured app", appID)
	}
	if sign == "" {
		return errors.New("unsigned")
	}
	sig, err := DecodeSign(sign)
	if err != nil {
		return errors.New("sign is not base64")
	}
	digest := digestOf(crypto.SHA256, text)
	for _, k := range app.Keys {
		if k.verify(crypto.SHA256, digest, sig) {
			return nil
		}
	}
	return fmt.Errorf("signature does not verify with the key(s) of app %s", appID)
}
