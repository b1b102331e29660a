package msgsim

import (
	"encoding/json"
	"net/http"
	"sort"
	"strconv"

	"github.com/alipay-notify-gateway/gateway/internal/samples"
)

// Control returns the simulator's control API, for cmd/msgsim and scripts
// (mount it beside the simulator: its paths start with /sim/):
//
//	POST /sim/deliver         app_id, msg_api, content, [msg_id], [timestamp]; or app_id and sample=NAME
//	POST /sim/deliver-forged  the same; the message's signature does not verify
//	POST /sim/drop            app_id: drop its connections
//	POST /sim/refuse          app_id, n: refuse its next n registrations
//	GET  /sim/acks            every acknowledgement received
//	GET  /sim/status          per app: connections, connects, registrations, pending
//
// Form values may come in the query or an urlencoded body.
func (s *Server) Control() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /sim/deliver", func(w http.ResponseWriter, r *http.Request) { s.controlDeliver(w, r, false) })
	mux.HandleFunc("POST /sim/deliver-forged", func(w http.ResponseWriter, r *http.Request) { s.controlDeliver(w, r, true) })
	mux.HandleFunc("POST /sim/drop", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, map[string]int{"dropped": s.DropConnections(r.FormValue("app_id"))})
	})
	mux.HandleFunc("POST /sim/refuse", func(w http.ResponseWriter, r *http.Request) {
		n, err := strconv.Atoi(r.FormValue("n"))
		if err != nil || n < 0 {
			writeJSON(w, http.StatusBadRequest, map[string]string{"error": "n must be a count"})
			return
		}
		s.RefuseRegistrations(r.FormValue("app_id"), n)
		writeJSON(w, http.StatusOK, map[string]int{"refuse": n})
	})
	mux.HandleFunc("GET /sim/acks", func(w http.ResponseWriter, r *http.Request) {
		acks := s.Acks()
		if acks == nil {
			acks = []Ack{}
		}
		writeJSON(w, http.StatusOK, acks)
	})
	mux.HandleFunc("GET /sim/status", func(w http.ResponseWriter, r *http.Request) {
		ids := make([]string, 0, len(s.cfg.Apps))
		for id := range s.cfg.Apps {
			ids = append(ids, id)
		}
		sort.Strings(ids)
		out := map[string]any{}
		for _, id := range ids {
			pending := s.Pending(id)
			if pending == nil {
				pending = []string{}
			}
			out[id] = map[string]any{"connections": s.Connections(id), "connects": s.Connects(id),
				"registrations": s.Registrations(id), "pending": pending}
		}
		writeJSON(w, http.StatusOK, out)
	})
	return mux
}

func (s *Server) controlDeliver(w http.ResponseWriter, r *http.Request, forged bool) {
	appID, api, content := r.FormValue("app_id"), r.FormValue("msg_api"), r.FormValue("content")
	if name := r.FormValue("sample"); name != "" {
		sm, ok := samples.Get(name)
		if !ok || sm.Form["msg_method"] == "" {
			writeJSON(w, http.StatusBadRequest, map[string]string{"error": "no message sample " + strconv.Quote(name)})
			return
		}
		api, content = sm.Method, sm.Form["biz_content"]
	}
	var ts int64
	if v := r.FormValue("timestamp"); v != "" {
		var err error
		if ts, err = strconv.ParseInt(v, 10, 64); err != nil {
			writeJSON(w, http.StatusBadRequest, map[string]string{"error": "timestamp is not milliseconds"})
			return
		}
	}
	if _, ok := s.cfg.Apps[appID]; !ok || api == "" {
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": "app_id must be a simulated app, and msg_api (or sample) is required"})
		return
	}
	msgID := r.FormValue("msg_id")
	if msgID == "" {
		msgID = randomHex(16)
	}
	err := s.deliver(appID, api, content, msgID, ts, forged)
	if err != nil {
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": err.Error()})
		return
	}
	writeJSON(w, http.StatusAccepted, map[string]string{"app_id": appID, "msg_id": msgID, "msg_api": api})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(v)
}
