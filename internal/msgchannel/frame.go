package msgchannel

import (
	"bytes"
	"crypto/rand"
	"encoding/json"
	"strings"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/alipay-notify-gateway/gateway/internal/alipay"
	"github.com/alipay-notify-gateway/gateway/internal/jsonspan"
	"github.com/alipay-notify-gateway/gateway/internal/notify"
)

// The frames of the channel, as the official Java SDK (com.alipay.api.msg)
// writes and reads them. A frame is text: header lines "key:value" each
// ended by CRLF, an empty line, then a JSON message
//
//	{"protocol":{"x-type":"message","x-cmd":"CONSUME","x-msgId":"...",...,"x-sign":"..."},
//	 "data":{"header":{"appId":"...","msgApi":"..."},"content":{...}}}
//
// x-sign signs the exact text of the data object, as received
// (alipay.Verifier.VerifyChannelMessage checks it).

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

// Frame is one parsed frame of the channel.
type Frame struct {
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

// Message returns what f carries for verification.
func (f *Frame) Message() alipay.ChannelMessage {
	return alipay.ChannelMessage{MsgID: f.MsgID, Timestamp: f.Timestamp, Version: f.Version, Charset: f.Charset,
		SignType: f.SignType, Sign: f.Sign, Data: f.Data, AppID: f.AppID, MsgAPI: f.MsgAPI, Content: f.Content}
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

// ParseFrame parses one text frame. It returns an EINVALID
// *notify.Error for a frame without the empty line, a message that is not
// a JSON object with a protocol object, a member given twice at the top
// level or in data (which copy was signed would be a guess), a data or
// header or content that is not an object, a NUL byte, or bytes that are
// not UTF-8. When the header lines and the protocol object could be read,
// the frame is returned with the error, so that the message can still be
// acknowledged FAIL.
func ParseFrame(frame []byte) (*Frame, error) {
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
	f := &Frame{}
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
	top, err := jsonspan.Members(msg)
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
	members, err := jsonspan.Members(data)
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

// Ack returns the acknowledgement of f with status AckSuccess or AckFail,
// byte for byte as the official Java SDK writes it (ProtocolData.toStr,
// Message.toStr): f's header lines, always with a stream-id (a new one when
// f has none, as ProtocolData's constructor makes), and
//
//	{"protocol":{"x-type":"message","x-cmd":"CONSUME_ACK","x-msgId":"...","x-version":"1.0","x-status":"..."}}
func (f *Frame) Ack(status string) []byte {
	msgID, _ := json.Marshal(f.MsgID)
	st, _ := json.Marshal(status)
	msg := `{"protocol":{"x-type":"message","x-cmd":"` + CmdConsumeAck + `","x-msgId":` + string(msgID) +
		`,"x-version":"1.0","x-status":` + string(st) + `}}`
	streamID := f.StreamID
	if streamID == "" {
		streamID = NewStreamID()
	}
	return EncodeFrame(streamID, f.FromSys, f.FromSysIP, []byte(msg))
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

// EncodeFrame returns a frame: the non-empty header lines in the
// Java SDK's order (from-sys, from-sys-ip, stream-id), the empty line, and
// message.
func EncodeFrame(streamID, fromSys, fromSysIP string, message []byte) []byte {
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
