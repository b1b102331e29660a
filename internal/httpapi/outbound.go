package httpapi

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"html/template"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/go-chi/chi/v5"

	"github.com/alipay-notify-gateway/gateway/internal/notify"
	"github.com/alipay-notify-gateway/gateway/internal/outbound"
)

// maxMessageBody caps a template message request, maxLinkBody an
// authorization link request.
const (
	maxMessageBody = 64 << 10
	maxLinkBody    = 8 << 10
)

// routesOutbound adds the outbound ops routes (behind the bearer token).
func (s *Server) routesOutbound(r chi.Router) {
	r.Post("/template-messages", s.sendTemplateMessage)
	r.Get("/users/{user_id}/subscriptions", s.getSubscriptions)
	r.Post("/authorization-links", s.createAuthorizationLink)
}

// decodeJSON decodes r's body, at most limit bytes of one JSON value with
// no unknown field, into v. It returns an ETOOLARGE *notify.Error for a
// longer body and an EINVALID one (bad_json) for anything else wrong, what
// names it.
func decodeJSON(w http.ResponseWriter, r *http.Request, limit int64, v any, what string) error {
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, limit))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		var tooLarge *http.MaxBytesError
		if errors.As(err, &tooLarge) {
			return notify.Errorf(notify.ETOOLARGE, "body_too_large", "the body is over %d bytes", limit)
		}
		return notify.Errorf(notify.EINVALID, "bad_json", "the body must be %s: %v", what, err)
	}
	return nil
}

// sendTemplateMessage sends a subscription template message; an
// Idempotency-Key header makes a retried call send once.
func (s *Server) sendTemplateMessage(w http.ResponseWriter, r *http.Request) {
	if _, err := query(r); err != nil {
		writeError(w, err)
		return
	}
	var m outbound.TemplateMessage
	if err := decodeJSON(w, r, maxMessageBody, &m, "a JSON template message"); err != nil {
		writeError(w, err)
		return
	}
	send, replayed, err := s.cfg.Outbound.SendTemplateMessage(r.Context(), m, r.Header.Get("Idempotency-Key"))
	if replayed {
		w.Header().Set("Idempotent-Replayed", "true")
	}
	if err != nil {
		writeOutboundError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, send)
}

// getSubscriptions queries a user's subscriptions to up to three
// templates (template_id=a,b,c).
func (s *Server) getSubscriptions(w http.ResponseWriter, r *http.Request) {
	q, err := query(r, "template_id", "app_id", "auth_app_id")
	if err != nil {
		writeError(w, err)
		return
	}
	var ids []string
	if t := q.Get("template_id"); t != "" {
		for _, id := range strings.Split(t, ",") {
			ids = append(ids, strings.TrimSpace(id))
		}
	}
	subs, err := s.cfg.Outbound.QuerySubscriptions(r.Context(), outbound.SubscriptionQuery{
		AppID: q.Get("app_id"), AuthAppID: q.Get("auth_app_id"), UserID: chi.URLParam(r, "user_id"), TemplateIDs: ids,
	})
	if err != nil {
		writeOutboundError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, subs)
}

// outboundErrorBody is the ops API's error document, with Alipay's codes
// when Alipay answered.
type outboundErrorBody struct {
	Error struct {
		Code          string `json:"code"`
		Message       string `json:"message"`
		AlipayCode    string `json:"alipay_code,omitempty"`
		AlipaySubCode string `json:"alipay_sub_code,omitempty"`
		AlipaySubMsg  string `json:"alipay_sub_msg,omitempty"`
	} `json:"error"`
}

// writeOutboundError answers err as writeError does, adding Alipay's codes
// for an *outbound.BusinessError.
func writeOutboundError(w http.ResponseWriter, err error) {
	var be *outbound.BusinessError
	if !errors.As(err, &be) {
		writeError(w, err)
		return
	}
	var b outboundErrorBody
	b.Error.Code = notify.ErrorCode(err)
	b.Error.Message = notify.ErrorMessage(err)
	b.Error.AlipayCode, b.Error.AlipaySubCode, b.Error.AlipaySubMsg = be.Code, be.SubCode, be.SubMsg
	writeJSON(w, statusOf(err), b)
}

// createAuthorizationLink hands out a merchant authorization link with a
// signed state: {"app_id", "redirect_uri", "ttl_seconds"} in,
// {"url", "state", "expires_at"} out.
func (s *Server) createAuthorizationLink(w http.ResponseWriter, r *http.Request) {
	if _, err := query(r); err != nil {
		writeError(w, err)
		return
	}
	var req outbound.LinkRequest
	if err := decodeJSON(w, r, maxLinkBody, &req, `a JSON object {"app_id", "redirect_uri", "ttl_seconds"}`); err != nil {
		writeError(w, err)
		return
	}
	link, err := s.cfg.Outbound.AuthorizationLink(req)
	if err != nil {
		writeError(w, err)
		return
	}
	s.log.Info().Str("app_id", link.AppID).Str("redirect_uri", req.RedirectURI).Time("expires_at", link.ExpiresAt).
		Msg("authorization link issued")
	writeJSON(w, http.StatusOK, link)
}

// callbackPage is the page a merchant's browser gets from the callback. It
// never shows a token, the code, or an error's text: a failure says only
// its class's message and a reference that the log line carries too.
var callbackPage = template.Must(template.New("callback").Parse(`<!doctype html>
<html lang="zh-CN"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1"><title>{{.Title}}</title></head>
<body><h1>{{.Title}}</h1>
{{range .Lines}}<p>{{.}}</p>
{{end}}{{with .Ref}}<p><small>参考编号 / Reference: <code>{{.}}</code></small></p>
{{end}}</body></html>
`))

// callbackPageData is what callbackPage shows.
type callbackPageData struct {
	Title string
	Lines []string
	Ref   string
}

// A failed callback's page says one of these, by the class of its error's
// code; each line in Chinese and in English.
var (
	pageBadLink   = []string{"授权链接无效或已过期，请重新发起授权。", "This authorization link is invalid or has expired. Please start the authorization again."}
	pageRefused   = []string{"支付宝未接受本次授权，请重新发起授权。", "Alipay did not accept this authorization. Please start the authorization again."}
	pageTemporary = []string{"暂时无法完成授权，请稍后再试。", "The authorization could not be completed for now. Please try again later."}
	pageBusy      = []string{"请求过于频繁，请稍后再试。", "Too many attempts. Please wait a minute and try again."}
)

// callbackClass returns the page lines and the log's class for a failed
// callback's err: the link was bad (a bad, missing or expired state, a
// missing code, an unknown app), Alipay refused the code, too many
// requests, or anything else, which trying again later may fix.
func callbackClass(err error) ([]string, string) {
	switch notify.ErrorCode(err) {
	case notify.EINVALID, notify.ENOTFOUND:
		return pageBadLink, "bad_link"
	case outbound.EBUSINESS:
		return pageRefused, "refused"
	case notify.ERATELIMITED:
		return pageBusy, "rate_limited"
	}
	return pageTemporary, "temporary"
}

// newRef returns a reference for one callback, to find its log line.
func newRef() string {
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// callbackOnce are the callback's parameters that may be given once only:
// a second app_id or state could otherwise ride in front of Alipay's.
var callbackOnce = []string{"app_id", "app_auth_code", "state"}

// maxCallbackAppID caps the redirect's app_id (Alipay's are 16 digits, 32
// at most), so that a long one fills no log.
const maxCallbackAppID = 64

// handleAuthCallback serves Alipay's redirect after a merchant authorized
// an ISV app (?app_id=...&app_auth_code=...&state=...): within the rate
// limit, it has the code exchanged for the merchant's tokens, stored
// sealed, once the state checks out (outbound.CompleteAuthorization), and
// answers a short page. A failure's page is generic, with a reference; its
// log line has the detail, never the code or a token.
func (s *Server) handleAuthCallback(w http.ResponseWriter, r *http.Request) {
	ref, client := newRef(), clientKey(r, s.cfg.TrustedProxies)
	q := r.URL.Query()
	var (
		grants []outbound.Grant
		err    error
	)
	if ok, why, retry := s.callbacks.allow(client); !ok {
		w.Header().Set("Retry-After", strconv.Itoa(max(1, int((retry+time.Second-1)/time.Second))))
		err = notify.Errorf(notify.ERATELIMITED, why, "the callback's rate limit refused the request (%s); retry in %s", why, retry.Round(time.Second))
	}
	for _, k := range callbackOnce {
		if err == nil && len(q[k]) > 1 {
			err = notify.Errorf(notify.EINVALID, "duplicate_parameter", "%s is given %d times", k, len(q[k]))
		}
	}
	appID := q.Get("app_id")
	if err == nil && len(appID) > maxCallbackAppID {
		err = notify.Errorf(notify.EINVALID, "bad_app_id", "app_id is over %d characters", maxCallbackAppID)
	}
	if err == nil {
		grants, err = s.cfg.Outbound.CompleteAuthorization(r.Context(), outbound.Callback{
			AppID: appID, Code: q.Get("app_auth_code"), State: q.Get("state"),
		})
	}
	ev := s.log.Info()
	if err != nil {
		lines, class := callbackClass(err)
		if class == "rate_limited" {
			ev = s.limited.Warn()
		} else {
			ev = s.log.Warn()
		}
		ev.Str("ref", ref).Str("app_id", notify.ClipTo(appID, maxCallbackAppID)).Str("client", client).Str("class", class).
			Str("reason", notify.ErrorReason(err)).Str("error", err.Error()).Int("status", statusOf(err)).
			Msg("authorization callback failed")
		writeCallbackPage(w, statusOf(err), callbackPageData{Title: "授权未完成 / Authorization failed", Lines: lines, Ref: ref})
		return
	}
	ev.Str("ref", ref).Str("app_id", appID).Str("client", client).Int("grants", len(grants)).Msg("authorization callback completed")
	page := callbackPageData{Title: "授权成功 / Authorization complete"}
	for _, g := range grants {
		line := fmt.Sprintf("您的应用 %s 已授权给应用 %s。 / Your app %s has authorized app %s.", g.AuthAppID, g.AppID, g.AuthAppID, g.AppID)
		if !g.Applied {
			line += " （已有更新的授权变更记录。 / A newer change of this authorization was already recorded.）"
		}
		page.Lines = append(page.Lines, line)
	}
	page.Lines = append(page.Lines, "您可以关闭此页面。 / You can close this page.")
	writeCallbackPage(w, http.StatusOK, page)
}

// writeCallbackPage answers page with status, not to be cached, framed,
// sniffed or followed by a Referer (the URL holds the code).
func writeCallbackPage(w http.ResponseWriter, status int, page callbackPageData) {
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Content-Security-Policy", "default-src 'none'; frame-ancestors 'none'")
	w.WriteHeader(status)
	_ = callbackPage.Execute(w, page)
}
