package httpapi

import (
	"context"
	"crypto/subtle"
	_ "embed"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/go-chi/chi/v5"

	"github.com/alipay-notify-gateway/gateway/internal/notify"
	"github.com/alipay-notify-gateway/gateway/internal/view"
)

// openAPI is the ops API's OpenAPI 3 document.
//
//go:embed openapi.json
var openAPI []byte

// routesV1 mounts the ops API. Every route but the OpenAPI document is
// behind a bearer token.
func (s *Server) routesV1(r chi.Router) {
	r.Get("/openapi.json", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(openAPI)
	})
	r.Group(func(r chi.Router) {
		r.Use(s.requireToken)
		r.Get("/notifications", s.listNotifications)
		r.Get("/notifications/{notify_id}", s.getNotification)
		r.Post("/notifications/{notify_id}/reprocess", s.reprocessNotification)
		r.Get("/authorizations", s.listAuthorizations)
		r.Get("/authorizations/{auth_app_id}", s.getAuthorization)
		r.Get("/mini-apps/{mini_app_id}", s.getMiniApp)
		r.Get("/mini-apps/{mini_app_id}/audit-history", s.getAuditHistory)
		r.Get("/mini-app-orders", s.listOrders)
		r.Get("/mini-app-orders/{order_no}", s.getOrder)
		if s.cfg.Outbound != nil {
			s.routesOutbound(r)
		}
		if s.cfg.Webhooks != nil {
			s.routesWebhooks(r)
		}
		if s.cfg.Batches != nil {
			s.routesBatches(r)
		}
		if s.cfg.Reconcile != nil {
			s.routesReconcile(r)
		}
	})
}

// requireToken admits a request whose Authorization header carries one of
// the configured bearer tokens, compared in constant time.
func (s *Server) requireToken(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		given, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		if !ok || !s.tokenValid(strings.TrimSpace(given)) {
			w.Header().Set("WWW-Authenticate", `Bearer realm="alipay-notify-gateway"`)
			writeError(w, notify.Errorf(notify.EUNAUTHORIZED, "bad_token", "missing or wrong bearer token"))
			return
		}
		next.ServeHTTP(w, r)
	})
}

func (s *Server) tokenValid(given string) bool {
	valid := 0
	for _, t := range s.cfg.Tokens {
		valid |= subtle.ConstantTimeCompare([]byte(given), []byte(t))
	}
	return given != "" && valid == 1
}

// page is a listing's answer.
type page[T any] struct {
	Items      []T    `json:"items"`
	NextCursor string `json:"next_cursor"`
}

func answerPage[T any](w http.ResponseWriter, items []T, next string, err error) {
	if err != nil {
		writeError(w, err)
		return
	}
	if items == nil {
		items = []T{}
	}
	writeJSON(w, http.StatusOK, page[T]{Items: items, NextCursor: next})
}

func answer(w http.ResponseWriter, v any, err error) {
	if err != nil {
		writeError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, v)
}

// answerOne answers what get returns for the path parameter param, on a
// request that takes no query parameter.
func answerOne[T any](w http.ResponseWriter, r *http.Request, param string, get func(context.Context, string) (T, error)) {
	if _, err := query(r); err != nil {
		writeError(w, err)
		return
	}
	v, err := get(r.Context(), chi.URLParam(r, param))
	answer(w, v, err)
}

// answerOfApp answers what get returns for the query's app_id (the only
// parameter it takes) and the path parameter param.
func answerOfApp[T any](w http.ResponseWriter, r *http.Request, param string, get func(ctx context.Context, appID, key string) (T, error)) {
	q, err := query(r, "app_id")
	if err != nil {
		writeError(w, err)
		return
	}
	v, err := get(r.Context(), q.Get("app_id"), chi.URLParam(r, param))
	answer(w, v, err)
}

func (s *Server) listNotifications(w http.ResponseWriter, r *http.Request) {
	q, err := query(r, "msg_method", "app_id", "status", "since", "until", "limit", "cursor")
	if err != nil {
		writeError(w, err)
		return
	}
	f := view.NotificationFilter{MsgMethod: q.Get("msg_method"), AppID: q.Get("app_id"), Status: notify.Status(q.Get("status")), Cursor: q.Get("cursor")}
	if f.Status != "" && !f.Status.Valid() {
		writeError(w, notify.Errorf(notify.EINVALID, "bad_query", "status must be applied, stale, unhandled or failed"))
		return
	}
	if f.Since, err = timeParam(q, "since"); err == nil {
		if f.Until, err = timeParam(q, "until"); err == nil {
			f.Limit, err = limitParam(q)
		}
	}
	if err != nil {
		writeError(w, err)
		return
	}
	items, next, err := s.cfg.Store.Notifications(r.Context(), f)
	answerPage(w, items, next, err)
}

func (s *Server) getNotification(w http.ResponseWriter, r *http.Request) {
	answerOfApp(w, r, "notify_id", s.cfg.Store.Notification)
}

func (s *Server) reprocessNotification(w http.ResponseWriter, r *http.Request) {
	q, err := query(r, "app_id")
	if err != nil {
		writeError(w, err)
		return
	}
	n, err := s.cfg.Reprocessor.Reprocess(r.Context(), q.Get("app_id"), chi.URLParam(r, "notify_id"))
	if err == nil {
		s.log.Info().Str("notify_id", n.NotifyID).Str("app_id", n.AppID).Str("msg_method", n.MsgMethod).
			Str("status", string(n.Status)).Str("reason", n.Error).Msg("notification reprocessed")
	}
	answer(w, n, err)
}

func (s *Server) listAuthorizations(w http.ResponseWriter, r *http.Request) {
	q, err := query(r, "status", "app_id", "limit", "cursor")
	if err != nil {
		writeError(w, err)
		return
	}
	f := view.AuthorizationFilter{Status: q.Get("status"), AppID: q.Get("app_id"), Cursor: q.Get("cursor")}
	if f.Status != "" && f.Status != "authorized" && f.Status != "cancelled" {
		writeError(w, notify.Errorf(notify.EINVALID, "bad_query", "status must be authorized or cancelled"))
		return
	}
	if f.Limit, err = limitParam(q); err != nil {
		writeError(w, err)
		return
	}
	items, next, err := s.cfg.Store.Authorizations(r.Context(), f)
	answerPage(w, items, next, err)
}

func (s *Server) getAuthorization(w http.ResponseWriter, r *http.Request) {
	answerOfApp(w, r, "auth_app_id", s.cfg.Store.Authorization)
}

func (s *Server) getMiniApp(w http.ResponseWriter, r *http.Request) {
	answerOne(w, r, "mini_app_id", s.cfg.Store.MiniApp)
}

func (s *Server) getAuditHistory(w http.ResponseWriter, r *http.Request) {
	if _, err := query(r); err != nil {
		writeError(w, err)
		return
	}
	h, err := s.cfg.Store.AuditHistory(r.Context(), chi.URLParam(r, "mini_app_id"))
	if err != nil {
		writeError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"mini_app_id": chi.URLParam(r, "mini_app_id"), "items": h})
}

func (s *Server) listOrders(w http.ResponseWriter, r *http.Request) {
	q, err := query(r, "out_order_no", "kind", "status", "limit", "cursor")
	if err != nil {
		writeError(w, err)
		return
	}
	f := view.OrderFilter{OutOrderNo: q.Get("out_order_no"), Kind: q.Get("kind"), Status: q.Get("status"), Cursor: q.Get("cursor")}
	if f.Kind != "" && f.Kind != notify.OrderKindMerchantConfirmed && f.Kind != notify.OrderKindFastRegister {
		writeError(w, notify.Errorf(notify.EINVALID, "bad_query", "kind must be merchant_confirmed or fast_register"))
		return
	}
	if f.Limit, err = limitParam(q); err != nil {
		writeError(w, err)
		return
	}
	items, next, err := s.cfg.Store.Orders(r.Context(), f)
	answerPage(w, items, next, err)
}

func (s *Server) getOrder(w http.ResponseWriter, r *http.Request) {
	answerOne(w, r, "order_no", s.cfg.Store.Order)
}

// query returns the request's query, refusing a parameter not in allowed
// (a typo would otherwise silently list everything) or given twice.
func query(r *http.Request, allowed ...string) (url.Values, error) {
	q := r.URL.Query()
	for k, vs := range q {
		ok := false
		for _, a := range allowed {
			ok = ok || a == k
		}
		if !ok {
			return nil, notify.Errorf(notify.EINVALID, "bad_query", "unknown query parameter %q", k)
		}
		if len(vs) > 1 {
			return nil, notify.Errorf(notify.EINVALID, "bad_query", "query parameter %q given %d times", k, len(vs))
		}
	}
	return q, nil
}

func timeParam(q url.Values, name string) (*time.Time, error) {
	s := q.Get(name)
	if s == "" {
		return nil, nil
	}
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return nil, notify.Errorf(notify.EINVALID, "bad_query", "%s must be an RFC 3339 time such as 2026-01-02T15:04:05Z", name)
	}
	return &t, nil
}

func limitParam(q url.Values) (int, error) {
	s := q.Get("limit")
	if s == "" {
		return view.DefaultLimit, nil
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 1 || n > view.MaxLimit {
		return 0, notify.Errorf(notify.EINVALID, "bad_query", "limit must be a whole number from 1 to %d", view.MaxLimit)
	}
	return n, nil
}
