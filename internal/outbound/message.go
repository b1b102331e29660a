package outbound

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/alipay-notify-gateway/gateway/internal/notify"
)

// The OpenAPI methods the Service calls.
const (
	MethodTemplateMessageSend = "alipay.open.app.mini.templatemessage.send"
	MethodSubscribeQuery      = "alipay.open.app.messagetemplate.subscribe.query"
	MethodAuthTokenApp        = "alipay.open.auth.token.app"
)

// MaxIdempotencyKey is the longest Idempotency-Key accepted.
const MaxIdempotencyKey = 255

// TemplateMessage is a subscription template message to send to a user of
// a mini-app: the ISV's own (AuthAppID empty) or a merchant's that
// authorized the ISV app (AuthAppID set; sent with its app_auth_token).
type TemplateMessage struct {
	AppID          string `json:"app_id,omitempty"`      // the ISV app; may be empty when only one is configured
	AuthAppID      string `json:"auth_app_id,omitempty"` // the merchant app to send for
	ToUserID       string `json:"to_user_id,omitempty"`  // the user's 2088 id, or
	ToOpenID       string `json:"to_open_id,omitempty"`  // the user's open_id
	UserTemplateID string `json:"user_template_id"`
	Page           string `json:"page"`
	// Data fills the template: a JSON object {"keyword1": {"value": "..."}},
	// given as an object or as a string holding one.
	Data   json.RawMessage `json:"data"`
	FormID string          `json:"form_id,omitempty"` // for payment or form templates only
}

// normalize checks m and brings Data to a compact JSON object. It returns
// an EINVALID *notify.Error naming what is wrong.
func (m *TemplateMessage) normalize() error {
	bad := func(format string, args ...any) error {
		return notify.Errorf(notify.EINVALID, "bad_message", format, args...)
	}
	switch {
	case m.ToUserID == "" && m.ToOpenID == "":
		return bad("to_user_id or to_open_id is required")
	case m.ToUserID != "" && m.ToOpenID != "":
		return bad("give to_user_id or to_open_id, not both")
	case m.UserTemplateID == "":
		return bad("user_template_id is required")
	case m.Page == "":
		return bad("page is required")
	}
	data, err := NormalizeData(m.Data)
	if err != nil {
		return err
	}
	m.Data = data
	return nil
}

// NormalizeData brings a template's data, a JSON object
// {"keyword1": {"value": "..."}} given as an object or as a string holding
// one, to a compact JSON object. It returns an EINVALID *notify.Error
// (bad_message) saying what is wrong.
func NormalizeData(raw json.RawMessage) (json.RawMessage, error) {
	bad := func(format string, args ...any) error {
		return notify.Errorf(notify.EINVALID, "bad_message", format, args...)
	}
	data := bytes.TrimSpace(raw)
	if len(data) > 0 && data[0] == '"' {
		var s string
		if err := json.Unmarshal(data, &s); err != nil {
			return nil, bad("data is not valid JSON")
		}
		data = bytes.TrimSpace([]byte(s))
	}
	var obj map[string]json.RawMessage
	if len(data) == 0 || data[0] != '{' || json.Unmarshal(data, &obj) != nil {
		return nil, bad(`data must be a JSON object such as {"keyword1": {"value": "..."}}`)
	}
	if len(obj) == 0 {
		return nil, bad("data is empty")
	}
	var buf bytes.Buffer
	if err := json.Compact(&buf, data); err != nil {
		return nil, bad("data is not valid JSON")
	}
	return buf.Bytes(), nil
}

// hash identifies the request, so that a key reused for another is caught.
func (m *TemplateMessage) hash() string {
	b, _ := json.Marshal(m)
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

// SendTemplateMessage sends m through alipay.open.app.mini.templatemessage.send
// and records the send and its outcome. With an idempotency key, a second
// call for the same app returns the first call's recorded result (replayed
// true) and sends nothing; of two concurrent calls with one key, one sends
// and the other gets an ECONFLICT error. Keys are scoped to the ISV app:
// the same key used for two apps sends two messages.
//
// It returns the recorded send, and: an EINVALID *notify.Error for a bad
// message or key, or app_id missing among several apps; ENOTFOUND for an
// unknown app or a merchant app that never authorized ours; ECONFLICT for a
// cancelled authorization, a key in use by a call in progress, or a key
// reused for another request; a *BusinessError (EBUSINESS) when Alipay
// refused the message; EUPSTREAM when the call failed and whether the
// message went out is unknown (recorded as "unknown", never as sent); and
// the Store's EUNAVAILABLE.
func (s *Service) SendTemplateMessage(ctx context.Context, m TemplateMessage, key string) (*Send, bool, error) {
	if err := CheckKey(key); err != nil {
		return nil, false, err
	}
	if err := m.normalize(); err != nil {
		return nil, false, err
	}
	c, err := s.client(m.AppID)
	if err != nil {
		return nil, false, err
	}
	m.AppID = c.app.ID
	hash := m.hash()
	if key != "" {
		prior, err := s.store.SendByKey(ctx, m.AppID, key)
		if err == nil {
			return s.replay(prior, hash)
		}
		if notify.ErrorCode(err) != notify.ENOTFOUND {
			return nil, false, err
		}
	}
	token := ""
	if m.AuthAppID != "" {
		if token, err = s.authToken(ctx, m.AppID, m.AuthAppID); err != nil {
			return nil, false, err
		}
	}
	req, err := json.Marshal(m) // as stored: the message, never a token
	if err != nil {
		return nil, false, fmt.Errorf("outbound: unable to encode the message: %w", err)
	}
	send := &Send{AppID: m.AppID, AuthAppID: m.AuthAppID, IdempotencyKey: key, Request: req, RequestHash: hash, Status: SendPending}
	prior, err := s.store.StartSend(ctx, send)
	if err != nil {
		return nil, false, err
	}
	if prior != nil {
		return s.replay(prior, hash)
	}

	biz := map[string]any{"user_template_id": m.UserTemplateID, "page": m.Page, "data": string(m.Data)}
	if m.ToUserID != "" {
		biz["to_user_id"] = m.ToUserID
	} else {
		biz["to_open_id"] = m.ToOpenID
	}
	if m.FormID != "" {
		biz["form_id"] = m.FormID
	}
	// Once started, the call runs to its end (bounded by the timeout) even
	// if the caller goes away, so that its outcome is known and recorded
	// for a retry with the same key.
	ctx = context.WithoutCancel(ctx)
	var ans common
	took, callErr := s.call(ctx, c, MethodTemplateMessageSend, biz, token, &ans)
	send.LatencyMS = took.Milliseconds()
	send.Status = SendSent
	send.Code, send.Msg, send.SubCode, send.SubMsg = string(ans.Code), ans.Msg, ans.SubCode, ans.SubMsg
	var be *BusinessError
	if errors.As(callErr, &be) {
		send.Code, send.Msg, send.SubCode, send.SubMsg = be.Code, be.Msg, be.SubCode, be.SubMsg
	}
	switch notify.ErrorCode(callErr) {
	case "":
	case EBUSINESS:
		send.Status = SendFailed
	default:
		send.Status, send.Error = SendUnknown, notify.ErrorMessage(callErr)
	}
	if err := s.store.FinishSend(ctx, send); err != nil {
		s.log.Error().Err(err).Int64("send_id", send.ID).Str("status", send.Status).Msg("template message outcome not recorded: it stays pending")
	}
	return send, false, callErr
}

// replay answers a call whose idempotency key is already recorded.
func (s *Service) replay(prior *Send, hash string) (*Send, bool, error) {
	// The request as the first call answered it: in the message's field
	// order, which the store's JSON does not keep.
	var m TemplateMessage
	if json.Unmarshal(prior.Request, &m) == nil {
		if req, err := json.Marshal(m); err == nil {
			prior.Request = req
		}
	}
	if prior.RequestHash != hash {
		return nil, false, notify.Errorf(notify.ECONFLICT, "idempotency_key_reused", "Idempotency-Key %q was used for a different request", prior.IdempotencyKey)
	}
	switch prior.Status {
	case SendSent:
		return prior, true, nil
	case SendFailed:
		return prior, true, &BusinessError{Code: prior.Code, Msg: prior.Msg, SubCode: prior.SubCode, SubMsg: prior.SubMsg,
			err: notify.Errorf(EBUSINESS, "alipay_business_error", "the first call with this Idempotency-Key was refused by Alipay: %s %s: %s %s",
				prior.Code, prior.Msg, prior.SubCode, prior.SubMsg)}
	case SendPending:
		if s.now().Sub(prior.CreatedAt) < s.stale {
			return nil, false, notify.Errorf(notify.ECONFLICT, "in_progress", "a call with Idempotency-Key %q is in progress", prior.IdempotencyKey)
		}
		return prior, true, notify.Errorf(EUPSTREAM, "outcome_unknown", "the first call with this Idempotency-Key never finished: whether Alipay sent the message is unknown")
	}
	return prior, true, notify.Errorf(EUPSTREAM, "outcome_unknown", "the first call with this Idempotency-Key failed (%s): whether Alipay sent the message is unknown; send with a new key if the user did not get it", prior.Error)
}

// CheckKey accepts an empty Idempotency-Key, or 1 to MaxIdempotencyKey
// printable ASCII characters; it returns an EINVALID *notify.Error
// (bad_idempotency_key) for any other.
func CheckKey(key string) error {
	if len(key) > MaxIdempotencyKey {
		return notify.Errorf(notify.EINVALID, "bad_idempotency_key", "Idempotency-Key is longer than %d characters", MaxIdempotencyKey)
	}
	for i := 0; i < len(key); i++ {
		if key[i] < 0x20 || key[i] > 0x7e {
			return notify.Errorf(notify.EINVALID, "bad_idempotency_key", "Idempotency-Key must be printable ASCII")
		}
	}
	return nil
}

// staleAfter is how long a pending send may be in progress; longer, and
// the process that started it is taken as gone.
func staleAfter(timeout time.Duration) time.Duration { return 2*timeout + 30*time.Second }
