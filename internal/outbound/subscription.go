package outbound

import (
	"context"
	"strings"

	"github.com/alipay-notify-gateway/gateway/internal/notify"
)

// MaxTemplateIDs is how many templates one subscription query may name:
// Alipay's limit, checked before any call.
const MaxTemplateIDs = 3

// SubscriptionQuery asks which of up to three templates a user subscribed
// to, in the ISV's mini-app or, with AuthAppID, in a merchant's.
type SubscriptionQuery struct {
	AppID       string
	AuthAppID   string
	UserID      string // a 2088 user id, or an open_id
	TemplateIDs []string
}

// Subscriptions is Alipay's answer to a SubscriptionQuery.
type Subscriptions struct {
	AppID     string `json:"app_id"`
	AuthAppID string `json:"auth_app_id"`
	UserID    string `json:"user_id"`
	// ShowComponent says whether the mini-app should show the
	// subscription component; null when Alipay did not say.
	ShowComponent *bool `json:"show_component"`
	// Relations are the user's subscriptions to the queried templates.
	// Alipay leaves out templates the user never subscribed to.
	Relations []SubscribeRelation `json:"subscribe_relations"`
}

// SubscribeRelation is a user's subscription to one template, as Alipay
// reports it.
type SubscribeRelation struct {
	TemplateID     string      `json:"template_id"`
	SubscribeState notify.Text `json:"subscribe_state"` // "1" subscribed, "0" refused
	SubscribeType  string      `json:"subscribe_type"`  // "longterm" or "onetime"
	KeepState      notify.Text `json:"keep_state"`      // the kept choice: "0" keep subscribed, "1" keep refusing
	Show           *bool       `json:"show"`
	// Subscribed is SubscribeState "1", for convenience.
	Subscribed bool `json:"subscribed"`
}

type subscribeAnswer struct {
	common
	ShowComponent *bool               `json:"show_component"`
	Relations     []SubscribeRelation `json:"subscribe_relations"`
}

// isUserID reports whether id is a 2088-style numeric user id rather than
// an open_id.
func isUserID(id string) bool {
	if !strings.HasPrefix(id, "2088") {
		return false
	}
	for _, r := range id {
		if r < '0' || r > '9' {
			return false
		}
	}
	return true
}

// QuerySubscriptions calls alipay.open.app.messagetemplate.subscribe.query.
// It returns an EINVALID *notify.Error, before any call, when the user or
// the template ids are missing, more than MaxTemplateIDs, empty or
// repeated; the client's and the merchant token's errors as
// SendTemplateMessage does; a *BusinessError when Alipay refused; and an
// EUPSTREAM *notify.Error when the call failed.
func (s *Service) QuerySubscriptions(ctx context.Context, q SubscriptionQuery) (*Subscriptions, error) {
	bad := func(format string, args ...any) error {
		return notify.Errorf(notify.EINVALID, "bad_query", format, args...)
	}
	if q.UserID == "" {
		return nil, bad("user_id is required")
	}
	switch n := len(q.TemplateIDs); {
	case n == 0:
		return nil, bad("template_id is required (1 to %d ids, comma-separated)", MaxTemplateIDs)
	case n > MaxTemplateIDs:
		return nil, bad("template_id lists %d ids; Alipay takes at most %d", n, MaxTemplateIDs)
	}
	seen := map[string]bool{}
	for _, id := range q.TemplateIDs {
		if id == "" {
			return nil, bad("template_id holds an empty id")
		}
		if seen[id] {
			return nil, bad("template_id lists %q twice", id)
		}
		seen[id] = true
	}
	c, err := s.client(q.AppID)
	if err != nil {
		return nil, err
	}
	token := ""
	if q.AuthAppID != "" {
		if token, err = s.authToken(ctx, c.app.ID, q.AuthAppID); err != nil {
			return nil, err
		}
	}
	biz := map[string]any{"template_id_list": q.TemplateIDs}
	if isUserID(q.UserID) {
		biz["user_id"] = q.UserID
	} else {
		biz["open_id"] = q.UserID
	}
	var ans subscribeAnswer
	if _, err := s.call(ctx, c, MethodSubscribeQuery, biz, token, &ans); err != nil {
		return nil, err
	}
	out := &Subscriptions{AppID: c.app.ID, AuthAppID: q.AuthAppID, UserID: q.UserID, ShowComponent: ans.ShowComponent,
		Relations: ans.Relations}
	if out.Relations == nil {
		out.Relations = []SubscribeRelation{}
	}
	for i := range out.Relations {
		out.Relations[i].Subscribed = out.Relations[i].SubscribeState == "1"
	}
	return out, nil
}
