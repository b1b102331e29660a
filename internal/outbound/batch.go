package outbound

import (
	"context"
	"encoding/json"
	"time"
)

// What the batch sender (internal/batchsend) calls: one recipient's send
// or subscription query at a time, through the same signed, verified call
// as the single send, but recorded by the sender in the batch's recipients
// rather than in template_messages.

// BatchMessage is one recipient's message of a batch: ToUserID or
// ToOpenID, and the template's fields, Data a compact JSON object
// (NormalizeData).
type BatchMessage struct {
	ToUserID       string
	ToOpenID       string
	UserTemplateID string
	Page           string
	Data           json.RawMessage
}

// StaleAfter is how long a call in progress may take, timeout and margin
// included: a call claimed longer ago than this was lost with its process.
func (s *Service) StaleAfter() time.Duration { return s.stale }

// AppID returns the id of the ISV app appID names: appID when it can call,
// the only app when appID is empty. It returns an EINVALID *notify.Error
// when appID is empty and several apps can call, and an ENOTFOUND one when
// appID is not an app that can call.
func (s *Service) AppID(appID string) (string, error) {
	c, err := s.client(appID)
	if err != nil {
		return "", err
	}
	return c.app.ID, nil
}

// MerchantToken opens the app_auth_token of authAppID's authorization of
// appID. It returns an ENOTFOUND *notify.Error when the merchant never
// authorized the app, an ECONFLICT one when the authorization is cancelled,
// holds no token or the token expired (reasons authorization_cancelled,
// no_token, token_expired), an EINTERNAL one when the token does not open,
// and the store's EUNAVAILABLE.
func (s *Service) MerchantToken(ctx context.Context, appID, authAppID string) (string, error) {
	return s.authToken(ctx, appID, authAppID)
}

// SendBatchMessage sends m through alipay.open.app.mini.templatemessage.send
// for appID, on behalf of the merchant holding token when it is set, and
// records nothing. The call runs to its end (bounded by the timeout)
// whatever ctx does, so that its outcome is known. It returns how long the
// call took, and call's errors: nil when Alipay answered success, signed; a
// *BusinessError (EBUSINESS) when it refused; an EUPSTREAM *notify.Error
// when the outcome is unknown, or when the call surely did not reach it
// (NotSent); and the client's EINVALID and ENOTFOUND for appID.
func (s *Service) SendBatchMessage(ctx context.Context, appID, token string, m BatchMessage) (time.Duration, error) {
	c, err := s.client(appID)
	if err != nil {
		return 0, err
	}
	biz := map[string]any{"user_template_id": m.UserTemplateID, "page": m.Page, "data": string(m.Data)}
	if m.ToUserID != "" {
		biz["to_user_id"] = m.ToUserID
	} else {
		biz["to_open_id"] = m.ToOpenID
	}
	var ans common
	return s.call(context.WithoutCancel(ctx), c, MethodTemplateMessageSend, biz, token, &ans)
}

// Subscribed asks alipay.open.app.messagetemplate.subscribe.query whether
// user (a 2088 user id or an open_id) subscribed to templateID in appID's
// mini-app (or, with token, the merchant's): true when Alipay lists the
// template with subscribe_state "1". It returns how long the call took,
// and call's errors as SendBatchMessage does.
func (s *Service) Subscribed(ctx context.Context, appID, token, user, templateID string) (bool, time.Duration, error) {
	c, err := s.client(appID)
	if err != nil {
		return false, 0, err
	}
	biz := map[string]any{"template_id_list": []string{templateID}}
	if isUserID(user) {
		biz["user_id"] = user
	} else {
		biz["open_id"] = user
	}
	var ans subscribeAnswer
	took, err := s.call(ctx, c, MethodSubscribeQuery, biz, token, &ans)
	if err != nil {
		return false, took, err
	}
	for _, r := range ans.Relations {
		if r.TemplateID == templateID && r.SubscribeState == "1" {
			return true, took, nil
		}
	}
	return false, took, nil
}
