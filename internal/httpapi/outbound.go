package httpapi

import (
	"encoding/json"
	"errors"
	"html/template"
	"net/http"
	"strings"

	"github.com/go-chi/chi/v5"

	"github.com/alipay-notify-gateway/gateway/internal/notify"
	"github.com/alipay-notify-gateway/gateway/internal/outbound"
)

// The outbound side's error codes belong in httpStatus (reply.go), the one
// table of statuses; until they are listed there they are added to it here,
// once, before any request.
// maxMessageBody caps a template message request.
const maxMessageBody = 64 << 10

// routesOutbound adds the outbound ops routes (behind the bearer token).
func (s *Server) routesOutbound(r chi.Router) {
	r.Post("/template-messages", s.sendTemplateMessage)
	r.Get("/users/{user_id}/subscriptions", s.getSubscriptions)
}

// sendTemplateMessage sends a subscription template message; an
// Idempotency-Key header makes a retried call send once.
func (s *Server) sendTemplateMessage(w http.ResponseWriter, r *http.Request) {
	if _, err := query(r); err != nil {
		writeError(w, err)
		return
	}
	var m outbound.TemplateMessage
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxMessageBody))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&m); err != nil {
		var tooLarge *http.MaxBytesError
		if errors.As(err, &tooLarge) {
			writeError(w, notify.Errorf(notify.ETOOLARGE, "body_too_large", "the body is over %d bytes", maxMessageBody))
			return
		}
		writeError(w, notify.Errorf(notify.EINVALID, "bad_json", "the body must be a JSON template message: %v", err))
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

// callbackPage is the page a merchant sees after authorizing. It never
// shows a token.
var callbackPage = template.Must(template.New("callback").Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{{.Title}}</title></head>
<body><h1>{{.Title}}</h1>
{{range .Lines}}<p>{{.}}</p>
{{end}}</body></html>
`))

// handleAuthCallback serves the redirect after a merchant authorizes an
// ISV app (?app_auth_code=...&app_id=...): it exchanges the code for the
// merchant's tokens, stores them sealed, and answers a short page.
func (s *Server) handleAuthCallback(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	appID := q.Get("app_id")
	grants, err := s.cfg.Outbound.CompleteAuthorization(r.Context(), outbound.Callback{AppID: appID, Code: q.Get("app_auth_code"), State: q.Get("state")})
	page := struct {
		Title string
		Lines []string
	}{Title: "Authorization complete"}
	status := http.StatusOK
	if err != nil {
		status = statusOf(err)
		page.Title = "Authorization failed"
		page.Lines = []string{notify.ErrorMessage(err), "Please try authorizing again; if it keeps failing, contact the service provider."}
		s.log.Warn().Str("app_id", appID).Str("reason", notify.ErrorReason(err)).Str("error", notify.ErrorMessage(err)).
			Int("status", status).Msg("authorization callback failed")
	}
	for _, g := range grants {
		line := "Your app " + g.AuthAppID + " has authorized app " + g.AppID + "."
		if !g.Applied {
			line += " (A newer change of this authorization was already recorded.)"
		}
		page.Lines = append(page.Lines, line)
	}
	if err == nil {
		page.Lines = append(page.Lines, "You can close this page.")
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Referrer-Policy", "no-referrer")
	w.WriteHeader(status)
	_ = callbackPage.Execute(w, page)
}
