package alipay

import (
	"bytes"
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/alipay-notify-gateway/gateway/internal/notify"
)

// The WebSocket channel (长连接) of Alipay's message service, as the official
// Java SDK (com.alipay.api.msg) speaks it. A frame is text: header lines
// "key:value" each ended by CRLF, an empty line, then a JSON message
//
//	{"protocol":{"x-type":"message","x-cmd":"CONSUME","x-msgId":"...",...,"x-sign":"..."},
//	 "data":{"header":{"appId":"...","msgApi":"..."},"content":{...}}}
//
// x-sign signs the exact text of the data object, as received.

// Frame header keys and protocol values.
const (
	FrameStreamID  = "stream-id"
	FrameFromSys   = "from-sys"
	FrameFromSysIP = "from-sys-ip"

	CmdConsume    = "CONSUME"
	CmdConsumeAck = "CONSUME_ACK"
	CmdProduce    = "PRODUCE"
	CmdProduceAck = "PRODUCE_ACK"

	AckSuccess = "SUCCESS"
	AckFail    = "FAIL"
)

// ContentFormChannel names, in a stored notification's content_form, the
// signed content of a channel message: the data object's exact text.
const ContentFormChannel = "channel_data"

// ChannelFrame is one parsed frame of the channel.
type ChannelFrame struct {
	// The frame's header lines. An acknowledgement echoes them.
	StreamID  string
	FromSys   string
	FromSysIP string

	// The protocol object's fields (x-type, x-cmd, ...).
	Type      string
	Cmd       string
	MsgID     string
	Timestamp string // x-timestamp as sent: milliseconds since the epoch
	Version   string
	Charset   string
	SignType  string
	Sign      string
	Status    string
	Code      string
	Error     string

	// Data is the exact text of the data object, the signed content; nil
	// when the message has none. AppID and MsgAPI are its header's, and
	// Content the exact text of its content object (nil when absent).
	Data    []byte
	AppID   string
	MsgAPI  string
	Content []byte
}

type channelProtocol struct {
	Type      string          `json:"x-type"`
	Cmd       string          `json:"x-cmd"`
	MsgID     string          `json:"x-msgId"`
	Timestamp json.RawMessage `json:"x-timestamp"`
	Version   string          `json:"x-version"`
	Charset   string          `json:"x-charset"`
	SignType  string          `json:"x-signType"`
	Sign      string          `json:"x-sign"`
	Status    string          `json:"x-status"`
	Code      string          `json:"x-code"`
	Error     string          `json:"x-error"`
}

func malformed(format string, args ...any) *notify.Error {
	return notify.Errorf(notify.EINVALID, "malformed_frame", format, args...)
}

// ParseChannelFrame parses one text frame. It returns an EINVALID
// *notify.Error for a frame without the empty line, a message that is not
// a JSON object with a protocol object, a member given twice at the top
// level or in data (which copy was signed would be a guess), a data or
// header or content that is not an object, a NUL byte, or bytes that are
// not UTF-8. When the header lines and the protocol object could be read,
// the frame is returned with the error, so that the message can still be
// acknowledged FAIL.
func ParseChannelFrame(frame []byte) (*ChannelFrame, error) {
	if bytes.IndexByte(frame, 0) >= 0 {
		return nil, malformed("frame holds a NUL byte")
	}
	if !utf8.Valid(frame) {
		// A text frame is UTF-8, whatever x-charset says of the signed bytes.
		return nil, malformed("frame is not UTF-8")
	}
	head, msg, ok := bytes.Cut(frame, []byte("\r\n\r\n"))
	if !ok {
		return nil, malformed("frame has no empty line (CRLF CRLF) after its header lines")
	}
	f := &ChannelFrame{}
	for _, line := range strings.Split(string(head), "\r\n") {
		k, val, _ := strings.Cut(line, ":")
		switch strings.TrimSpace(k) {
		case FrameStreamID:
			f.StreamID = strings.TrimSpace(val)
		case FrameFromSys:
			f.FromSys = strings.TrimSpace(val)
		case FrameFromSysIP:
			f.FromSysIP = strings.TrimSpace(val)
		}
	}
	msg = bytes.TrimSpace(msg)
	if !json.Valid(msg) {
		return nil, malformed("message is not JSON")
	}
	top, err := ObjectMembers(msg)
	if err != nil {
		return nil, malformed("message: %v", err)
	}
	proto, ok := top["protocol"]
	if !ok || proto[0] != '{' {
		return nil, malformed("message has no protocol object")
	}
	var p channelProtocol
	if err := json.Unmarshal(proto, &p); err != nil {
		return nil, malformed("protocol: %v", err)
	}
	f.Type, f.Cmd, f.MsgID, f.Version, f.Charset = p.Type, p.Cmd, p.MsgID, p.Version, p.Charset
	f.SignType, f.Sign, f.Status, f.Code, f.Error = p.SignType, p.Sign, p.Status, p.Code, p.Error
	if len(p.Timestamp) > 0 && string(p.Timestamp) != "null" {
		var s string
		if json.Unmarshal(p.Timestamp, &s) != nil {
			s = string(p.Timestamp) // a number rather than a string
		}
		f.Timestamp = s
	}
	data, ok := top["data"]
	if !ok || string(data) == "null" {
		return f, nil
	}
	if data[0] != '{' {
		return f, malformed("data is not an object")
	}
	f.Data = data
	members, err := ObjectMembers(data)
	if err != nil {
		return f, malformed("data: %v", err)
	}
	if h, ok := members["header"]; ok {
		var header struct {
			AppID  string `json:"appId"`
			MsgAPI string `json:"msgApi"`
		}
		if h[0] != '{' || json.Unmarshal(h, &header) != nil {
			return f, malformed("data.header is not an object of strings")
		}
		f.AppID, f.MsgAPI = header.AppID, header.MsgAPI
	}
	if c, ok := members["content"]; ok && string(c) != "null" {
		if c[0] != '{' {
			return f, malformed("data.content is not an object")
		}
		f.Content = c
	}
	return f, nil
}

// ChannelMessage verifies and decodes one CONSUME frame received on appID's
// connection: the channel's whole intake check, the counterpart of
// Notification. The notification's notify_id is x-msgId, msg_method is
// msgApi, utc_timestamp is x-timestamp, app_id is the header's appId (which
// must be appID) and biz_content the exact text of content, secrets
// redacted. Errors are *notify.Error: EINVALID for a malformed frame or a
// missing field, EUNVERIFIED for an unknown app, a missing, undecodable or
// wrong x-sign, a refused x-signType, or an appId that is not appID. The
// frame is returned whenever it could be parsed, error or not, so that it
// can be acknowledged.
func (v *Verifier) ChannelMessage(appID string, msg []byte, now time.Time) (*notify.Notification, *ChannelFrame, error) {
	f, err := ParseChannelFrame(msg)
	if err != nil {
		return nil, f, err
	}
	if f.Cmd != CmdConsume {
		return nil, f, notify.Errorf(notify.EINVALID, "bad_parameter", "x-cmd %q is not %s", f.Cmd, CmdConsume)
	}
	if f.MsgID == "" {
		return nil, f, notify.Errorf(notify.EINVALID, "missing_parameter", "x-msgId is missing")
	}
	if !ValidNotifyID(f.MsgID) {
		return nil, f, notify.Errorf(notify.EINVALID, "bad_parameter", "x-msgId %q is not an Alipay message id (letters, digits, '-', '_' or '.', at most 64)", notify.Clip(f.MsgID))
	}
	if f.Data == nil {
		return nil, f, notify.Errorf(notify.EINVALID, "missing_parameter", "data is missing")
	}
	app, ok := v.apps[appID]
	if !ok {
		return nil, f, notify.Errorf(notify.EUNVERIFIED, "unknown_app", "app_id %q is not a configured app", notify.Clip(appID))
	}
	gbk, err := isGBK(f.Charset)
	if err != nil {
		return nil, f, err
	}
	certSN, digest, err := app.verifyChannel(f.Data, f.Sign, f.SignType, gbk, now)
	if err != nil {
		return nil, f, err
	}
	// Signed, so Alipay's: now the fields it signed can be trusted.
	if f.AppID != appID {
		return nil, f, notify.Errorf(notify.EUNVERIFIED, "app_mismatch", "message for app %q arrived on the channel of app %s", notify.Clip(f.AppID), appID)
	}
	if f.MsgAPI == "" {
		return nil, f, notify.Errorf(notify.EINVALID, "missing_parameter", "data.header.msgApi is missing")
	}
	if !dotted(f.MsgAPI) || len(f.MsgAPI) > identifiers[ParamMsgMethod].max {
		return nil, f, notify.Errorf(notify.EINVALID, "bad_parameter", "data.header.msgApi %q is not a method name", notify.Clip(f.MsgAPI))
	}
	// x-timestamp is outside what x-sign covers: bounded like any time, and
	// the digest of the signed data (not x-msgId) says whether the inbox
	// has this message already.
	var ts int64
	if f.Timestamp != "" {
		ts, err = strconv.ParseInt(f.Timestamp, 10, 64)
		if err != nil || ts < 0 || len(f.Timestamp) > identifiers[ParamTimestamp].max {
			return nil, f, notify.Errorf(notify.EINVALID, "bad_parameter", "x-timestamp %q is not milliseconds since the epoch", notify.Clip(f.Timestamp))
		}
	}
	if err := v.checkTime("x-timestamp", ts, now); err != nil {
		return nil, f, err
	}
	content := string(f.Content)
	params := map[string]string{
		ParamAppID:      f.AppID,
		ParamNotifyID:   f.MsgID,
		ParamMsgMethod:  f.MsgAPI,
		ParamBizContent: content,
		ParamCharset:    f.Charset,
		ParamSignType:   f.SignType,
	}
	if f.Timestamp != "" {
		params[ParamTimestamp] = f.Timestamp
	}
	if f.Version != "" {
		params[ParamVersion] = f.Version
	}
	n := &notify.Notification{
		AppID:         f.AppID,
		NotifyID:      f.MsgID,
		Method:        f.MsgAPI,
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
	return n, f, nil
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
	sig, err := base64.StdEncoding.DecodeString(RepairSign(sign))
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

// Ack returns the acknowledgement of f with status AckSuccess or AckFail,
// byte for byte as the official Java SDK writes it (ProtocolData.toStr,
// Message.toStr): f's header lines, always with a stream-id (a new one when
// f has none, as ProtocolData's constructor makes), and
//
//	{"protocol":{"x-type":"message","x-cmd":"CONSUME_ACK","x-msgId":"...","x-version":"1.0","x-status":"..."}}
func (f *ChannelFrame) Ack(status string) []byte {
	msgID, _ := json.Marshal(f.MsgID)
	st, _ := json.Marshal(status)
	msg := `{"protocol":{"x-type":"message","x-cmd":"` + CmdConsumeAck + `","x-msgId":` + string(msgID) +
		`,"x-version":"1.0","x-status":` + string(st) + `}}`
	streamID := f.StreamID
	if streamID == "" {
		streamID = NewStreamID()
	}
	return EncodeChannelFrame(streamID, f.FromSys, f.FromSysIP, []byte(msg))
}

// streamSeq numbers the stream ids NewStreamID makes.
var streamSeq atomic.Uint32

// NewStreamID returns a stream id made as the Java SDK's ProtocolData does
// (genStreamId): "c", then the time in ms, two random characters and a
// sequence number, in base 62 (8, 2 and 3 characters).
func NewStreamID() string {
	var r [2]byte
	_, _ = rand.Read(r[:])
	return "c" + base62(uint64(time.Now().UnixMilli()), 8) + base62(uint64(r[0])<<8|uint64(r[1]), 2) +
		base62(uint64(streamSeq.Add(1)), 3)
}

// base62 writes n in base 62 on exactly width characters (the low digits).
func base62(n uint64, width int) string {
	const digits = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
	b := make([]byte, width)
	for i := width - 1; i >= 0; i-- {
		b[i] = digits[n%62]
		n /= 62
	}
	return string(b)
}

// EncodeChannelFrame returns a frame: the non-empty header lines in the
// Java SDK's order (from-sys, from-sys-ip, stream-id), the empty line, and
// message.
func EncodeChannelFrame(streamID, fromSys, fromSysIP string, message []byte) []byte {
	var b bytes.Buffer
	for _, h := range [][2]string{{FrameFromSys, fromSys}, {FrameFromSysIP, fromSysIP}, {FrameStreamID, streamID}} {
		if h[1] != "" {
			b.WriteString(h[0] + ":" + oneLine(h[1]) + "\r\n")
		}
	}
	if b.Len() == 0 {
		b.WriteString("\r\n")
	}
	b.WriteString("\r\n")
	b.Write(message)
	return b.Bytes()
}

func oneLine(s string) string {
	return strings.NewReplacer("\r", "", "\n", "").Replace(s)
}

// ChannelRegisterAnswer checks the answer of the channel's register.do for
// appID: a JSON object {"response":{...},"sign":"..."} whose sign signs the
// exact text of response with an Alipay key of the app. It returns the
// link_token of a successful answer (code 10000 or 100000000). A failure
// answer is an error naming its code and message, signed or not; a success
// answer that is unsigned or does not verify is an error too.
func (v *Verifier) ChannelRegisterAnswer(appID string, body []byte) (string, error) {
	app, ok := v.apps[appID]
	if !ok {
		return "", fmt.Errorf("app_id %q is not a configured app", appID)
	}
	body = bytes.TrimSpace(body)
	if !json.Valid(body) {
		return "", errors.New("register answer is not JSON")
	}
	top, err := ObjectMembers(body)
	if err != nil {
		return "", fmt.Errorf("register answer: %v", err)
	}
	raw, ok := top["response"]
	if !ok || raw[0] != '{' {
		return "", errors.New("register answer has no response object")
	}
	var resp struct {
		Code      string `json:"code"`
		Msg       string `json:"msg"`
		SubCode   string `json:"sub_code"`
		SubMsg    string `json:"sub_msg"`
		LinkToken string `json:"link_token"`
	}
	if err := json.Unmarshal(raw, &resp); err != nil {
		return "", fmt.Errorf("register answer: response: %v", err)
	}
	if resp.Code != "10000" && resp.Code != "100000000" {
		return "", fmt.Errorf("register refused: code %s %s %s %s", resp.Code, resp.Msg, resp.SubCode, resp.SubMsg)
	}
	var sign string
	if s, ok := top["sign"]; ok {
		_ = json.Unmarshal(s, &sign)
	}
	if sign == "" {
		return "", errors.New("register answer is unsigned")
	}
	sig, err := base64.StdEncoding.DecodeString(RepairSign(sign))
	if err != nil {
		return "", errors.New("register answer: sign is not base64")
	}
	digest := digestOf(crypto.SHA256, raw)
	verified := false
	for _, k := range app.Keys {
		if k.verify(crypto.SHA256, digest, sig) {
			verified = true
			break
		}
	}
	if !verified {
		return "", fmt.Errorf("register answer: signature does not verify with the key(s) of app %s", appID)
	}
	if resp.LinkToken == "" {
		return "", errors.New("register answer has no link_token")
	}
	return resp.LinkToken, nil
}

// ChannelParams returns the query parameters of a register.do or websocket
// request signed as the Java SDK signs them: every parameter but sign,
// sign_type included, sorted by key and joined k=v with &, SHA256withRSA
// (RSA2) with the app's private key.
func ChannelParams(params map[string]string, key *rsa.PrivateKey) (map[string]string, error) {
	if key == nil {
		return nil, errors.New("no app private key")
	}
	f := make(Form, len(params)+1)
	for k, val := range params {
		f[k] = val
	}
	f[ParamSignType] = "RSA2"
	signed, err := Sign(f, key, FormV2, crypto.SHA256)
	if err != nil {
		return nil, err
	}
	return signed, nil
}

// ObjectMembers returns the members of the JSON object obj, each value as
// its exact text. It works on the text itself: strings and their escapes
// are skipped, so a brace inside a string does not count. It returns an
// error when obj is not one JSON object (whitespace around it allowed), or
// when a key appears twice: the two copies could be read differently by
// the signer and by us. It does not validate numbers and literals beyond
// their extent; call json.Valid first for that.
func ObjectMembers(obj []byte) (map[string][]byte, error) {
	i := skipSpace(obj, 0)
	if i >= len(obj) || obj[i] != '{' {
		return nil, errors.New("not a JSON object")
	}
	out := map[string][]byte{}
	i = skipSpace(obj, i+1)
	if i < len(obj) && obj[i] == '}' {
		if skipSpace(obj, i+1) != len(obj) {
			return nil, errors.New("text after the object")
		}
		return out, nil
	}
	for {
		if i >= len(obj) || obj[i] != '"' {
			return nil, errors.New("expected a member name")
		}
		end, err := stringEnd(obj, i)
		if err != nil {
			return nil, err
		}
		key, err := memberName(obj[i:end])
		if err != nil {
			return nil, err
		}
		i = skipSpace(obj, end)
		if i >= len(obj) || obj[i] != ':' {
			return nil, errors.New("expected ':' after a member name")
		}
		i = skipSpace(obj, i+1)
		vend, err := ValueEnd(obj, i)
		if err != nil {
			return nil, err
		}
		if _, dup := out[key]; dup {
			return nil, fmt.Errorf("member %q appears twice", key)
		}
		out[key] = obj[i:vend]
		i = skipSpace(obj, vend)
		if i >= len(obj) {
			return nil, errors.New("unterminated object")
		}
		switch obj[i] {
		case ',':
			i = skipSpace(obj, i+1)
		case '}':
			if skipSpace(obj, i+1) != len(obj) {
				return nil, errors.New("text after the object")
			}
			return out, nil
		default:
			return nil, errors.New("expected ',' or '}' after a member")
		}
	}
}

// memberName decodes a quoted member name.
func memberName(quoted []byte) (string, error) {
	if bytes.IndexByte(quoted, '\\') < 0 && utf8.Valid(quoted) {
		return string(quoted[1 : len(quoted)-1]), nil
	}
	// Escapes, or bytes that are not UTF-8: decode as encoding/json does.
	var s string
	if err := json.Unmarshal(quoted, &s); err != nil {
		return "", errors.New("bad member name")
	}
	return s, nil
}

// ValueEnd returns the index just past the JSON value that starts at s[i]:
// for an object or an array, the index after its matching closing bracket,
// skipping strings and their escapes. Brackets must match.
func ValueEnd(s []byte, i int) (int, error) {
	if i >= len(s) {
		return 0, errors.New("expected a value")
	}
	switch s[i] {
	case '"':
		return stringEnd(s, i)
	case '{', '[':
		stack := []byte{s[i]}
		for j := i + 1; j < len(s); {
			switch c := s[j]; c {
			case '"':
				end, err := stringEnd(s, j)
				if err != nil {
					return 0, err
				}
				j = end
				continue
			case '{', '[':
				stack = append(stack, c)
			case '}', ']':
				open := stack[len(stack)-1]
				if (c == '}') != (open == '{') {
					return 0, errors.New("mismatched brackets")
				}
				stack = stack[:len(stack)-1]
				if len(stack) == 0 {
					return j + 1, nil
				}
			}
			j++
		}
		return 0, errors.New("unterminated object or array")
	case '}', ']', ',', ':':
		return 0, errors.New("expected a value")
	}
	j := i
	for j < len(s) {
		switch s[j] {
		case ',', '}', ']', ':', '"', '{', '[', ' ', '\t', '\r', '\n':
			if j == i {
				return 0, errors.New("expected a value")
			}
			return j, nil
		}
		j++
	}
	return j, nil
}

// stringEnd returns the index just past the string starting at s[i] ('"').
func stringEnd(s []byte, i int) (int, error) {
	for j := i + 1; j < len(s); j++ {
		switch s[j] {
		case '\\':
			j++ // skip the escaped byte; \uXXXX's digits are plain bytes
		case '"':
			return j + 1, nil
		}
	}
	return 0, errors.New("unterminated string")
}

func skipSpace(s []byte, i int) int {
	for i < len(s) {
		switch s[i] {
		case ' ', '\t', '\r', '\n':
			i++
		default:
			return i
		}
	}
	return i
}
