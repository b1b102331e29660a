package httpapi

import (
	"crypto/subtle"
	"net/http"
	"strings"

	"github.com/go-chi/chi/v5"

	"github.com/alipay-notify-gateway/gateway/internal/notify"
)

// routesV1 mounts the ops API, every route behind a bearer token.
func (s *Server) routesV1(r chi.Router) {
	r.Use(s.requireToken)
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
