package openapisim

import (
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"net/url"
	"strconv"
	"sync"
)

var (
	otherOnce sync.Once
	other     *rsa.PrivateKey
)

// otherKey is a key that is not Alipay's, for badly signed answers.
func otherKey() *rsa.PrivateKey {
	otherOnce.Do(func() {
		k, err := rsa.GenerateKey(rand.Reader, 2048)
		if err != nil {
			panic(err)
		}
		other = k
	})
	return other
}

// success is the common part of a successful answer.
type success struct {
	Code string `json:"code"`
	Msg  string `json:"msg"`
}

var ok = success{Code: "10000", Msg: "Success"}

// handle answers a checked request by method, as f (which asks for no
// failure) says.
func (s *Sim) handle(p url.Values, biz map[string]any, f Fault) any {
	g, given, valid := s.token(p)
	if given && !valid {
		return errInvalidToken
	}
	if e, expired := s.expiredToken(p); expired {
		return e
	}
	switch p.Get("method") {
	case MethodTemplateMessageSend:
		return s.send(p.Get("app_id"), g.authAppID, biz)
	case MethodSubscribeQuery:
		return s.query(biz)
	case MethodAuthTokenApp:
		return s.authToken(p.Get("app_id"), biz, f.AuthAppID)
	case MethodMiniVersionList, MethodMiniVersionDetail, MethodAuthTokenQuery:
		return s.reconcile(p.Get("method"), p.Get("app_id"), g, given, biz)
	}
	return errInvalid.sub("isv.invalid-method", "不存在的方法名")
}

func str(biz map[string]any, k string) string {
	v, _ := biz[k].(string)
	return v
}

// send delivers a template message.
func (s *Sim) send(appID, authAppID string, biz map[string]any) any {
	m := Message{AppID: appID, AuthAppID: authAppID, ToUserID: str(biz, "to_user_id"), ToOpenID: str(biz, "to_open_id"),
		UserTemplateID: str(biz, "user_template_id"), Page: str(biz, "page"), Data: str(biz, "data"), FormID: str(biz, "form_id")}
	switch {
	case m.ToUserID == "" && m.ToOpenID == "":
		return errMissing.sub("isv.missing-to-user-id", "缺少必选参数to_user_id")
	case m.UserTemplateID == "":
		return errMissing.sub("isv.missing-user-template-id", "缺少必选参数user_template_id")
	}
	var data map[string]any
	if json.Unmarshal([]byte(m.Data), &data) != nil {
		return errBusiness.sub("INVALID_PARAMETER", "data 不是合法的 JSON 字符串")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if e, refused := s.refuseLocked(m); refused {
		return e
	}
	s.deliverLocked(m)
	return ok
}

// relation is one template's subscription in a query's answer.
type relation struct {
	TemplateID     string `json:"template_id"`
	SubscribeState string `json:"subscribe_state"`
	SubscribeType  string `json:"subscribe_type"`
	KeepState      string `json:"keep_state"`
	Show           bool   `json:"show"`
}

type queryAnswer struct {
	success
	ShowComponent bool       `json:"show_component"`
	Relations     []relation `json:"subscribe_relations,omitempty"`
}

// query answers which of up to three templates a user subscribed to.
func (s *Sim) query(biz map[string]any) any {
	user := str(biz, "user_id")
	if user == "" {
		user = str(biz, "open_id")
	}
	if user == "" {
		return errMissing.sub("isv.missing-user-id", "缺少必选参数user_id")
	}
	ids, _ := biz["template_id_list"].([]any)
	if len(ids) == 0 || len(ids) > 3 {
		return errBusiness.sub("TEMPLATE_ID_LIST_ILLEGAL", "模板id列表不合法")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	out := queryAnswer{success: ok}
	for _, v := range ids {
		id, _ := v.(string)
		if sub, found := s.subscriptions[user][id]; found {
			out.Relations = append(out.Relations, relation{TemplateID: id, SubscribeState: sub.State, SubscribeType: sub.Type,
				KeepState: "0", Show: true})
		} else {
			out.ShowComponent = true
		}
	}
	return out
}

// tokenSet is one authorization's tokens; expires_in is a number,
// re_expires_in a string, as Alipay mixes them.
type tokenSet struct {
	AppAuthToken    string `json:"app_auth_token"`
	AppRefreshToken string `json:"app_refresh_token"`
	AuthAppID       string `json:"auth_app_id"`
	UserID          string `json:"user_id"`
	ExpiresIn       int64  `json:"expires_in"`
	ReExpiresIn     string `json:"re_expires_in"`
}

// authToken exchanges an app_auth_code (answering the newer "tokens" list)
// or a refresh token (answering the tokens at the top level). With
// otherAuthAppID it answers new tokens of that merchant app's
// authorization instead, leaving those of the code's or refresh token's as
// they were.
func (s *Sim) authToken(appID string, biz map[string]any, otherAuthAppID string) any {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch str(biz, "grant_type") {
	case "authorization_code":
		g, found := s.codes[str(biz, "code")]
		if !found || g.appID != appID {
			return errBusiness.sub("isv.code-invalid", "授权码code无效")
		}
		delete(s.codes, str(biz, "code"))
		if otherAuthAppID != "" {
			g.authAppID = otherAuthAppID
		}
		return struct {
			success
			Tokens []tokenSet `json:"tokens"`
		}{ok, []tokenSet{s.tokenSetLocked(g)}}
	case "refresh_token":
		g, found := s.refresh[str(biz, "refresh_token")]
		if !found || g.appID != appID {
			return errBusiness.sub("isv.refresh-token-invalid", "刷新令牌refresh_token无效")
		}
		if otherAuthAppID != "" {
			g.authAppID = otherAuthAppID
		}
		return struct {
			success
			tokenSet
		}{ok, s.tokenSetLocked(g)}
	}
	return errInvalid.sub("isv.invalid-grant-type", "grant_type must be authorization_code or refresh_token")
}

func (s *Sim) tokenSetLocked(g grant) tokenSet {
	token, refresh := s.issueLocked(g)
	return tokenSet{AppAuthToken: token, AppRefreshToken: refresh, AuthAppID: g.authAppID, UserID: g.userID,
		ExpiresIn: s.expiresIn, ReExpiresIn: strconv.FormatInt(s.reExpiresIn, 10)}
}
