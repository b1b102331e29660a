package httpapi

import (
	"net/http"

	"github.com/go-chi/chi/v5"
)

// routesOutbound adds the outbound ops routes (behind the bearer token).
func (s *Server) routesOutbound(r chi.Router) {}

// handleAuthCallback serves the redirect after a merchant authorizes.
func (s *Server) handleAuthCallback(w http.ResponseWriter, r *http.Request) {
	http.NotFound(w, r)
}
