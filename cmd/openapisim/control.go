package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/alipay-notify-gateway/gateway/internal/openapisim"
)

// control is the simulator's control API, JSON in and out (errors are 400
// {"error": "..."}):
//
//	GET  /sim/stats    {requests, calls, calls_by_method, sent, rate_limited, faults};
//	                   ?times=1 adds send_times, when each message was delivered
//	                   (Unix microseconds, oldest first); ?dups=1 adds duplicates,
//	                   the deliveries of a message (app, merchant, user, template)
//	                   delivered before
//	POST /sim/rate     {"app_id": "" (every app), "per_second": 50, "burst": 10 (0: a fifth of a second's)}; per_second 0 removes it
//	POST /sim/failure  {"method": "" (the send), "fraction": 0.1, "fault": {"code", "msg", "sub_code",
//	                   "sub_msg", "http_status", "delay": "2s", "hang", "unsigned", "bad_sign", "deliver"}}
//	POST /sim/fail-user {"user": "2088...", "code": "40004", "sub_code": "..."}; code "" undoes it
//	POST /sim/subscribe {"user_ids": [...], "template_id", "state": "1", "type": "longterm"} and/or
//	                   {"require": true|false} (RequireSubscription)
//	POST /sim/revoke   {"app_id", "auth_app_id"}: the merchant's authorization ends
//	POST /sim/code     {"app_id", "auth_app_id", "user_id"} -> {"app_auth_code"}, for the authorization callback
//
// Each POST answers {"ok": true} or what it made.
func control(sim *openapisim.Sim, appIDs []string) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /sim/stats", func(w http.ResponseWriter, r *http.Request) {
		out := struct {
			openapisim.Stats
			SendTimes  []int64 `json:"send_times,omitempty"`
			Duplicates *int    `json:"duplicates,omitempty"`
		}{Stats: sim.Stats()}
		if r.URL.Query().Get("times") == "1" {
			times := sim.SendTimes()
			out.SendTimes = make([]int64, len(times))
			for i, t := range times {
				out.SendTimes[i] = t.UnixMicro()
			}
		}
		if r.URL.Query().Get("dups") == "1" {
			type key struct{ app, merchant, user, openID, template string }
			seen := map[key]bool{}
			n := 0
			for _, m := range sim.Sent() {
				k := key{m.AppID, m.AuthAppID, m.ToUserID, m.ToOpenID, m.UserTemplateID}
				if seen[k] {
					n++
				}
				seen[k] = true
			}
			out.Duplicates = &n
		}
		writeJSON(w, http.StatusOK, out)
	})
	mux.HandleFunc("POST /sim/rate", func(w http.ResponseWriter, r *http.Request) {
		var req struct {
			AppID     string  `json:"app_id"`
			PerSecond float64 `json:"per_second"`
			Burst     int     `json:"burst"`
		}
		if !readJSON(w, r, &req) {
			return
		}
		if req.PerSecond < 0 || req.Burst < 0 {
			writeError(w, errors.New("per_second and burst must not be negative"))
			return
		}
		if req.Burst == 0 {
			req.Burst = defaultBurst(req.PerSecond)
		}
		ids := appIDs
		if req.AppID != "" {
			ids = []string{req.AppID}
		}
		for _, id := range ids {
			sim.SetRateLimit(id, req.PerSecond, req.Burst)
		}
		writeJSON(w, http.StatusOK, map[string]any{"app_ids": ids, "per_second": req.PerSecond, "burst": req.Burst})
	})
	mux.HandleFunc("POST /sim/failure", func(w http.ResponseWriter, r *http.Request) {
		var req struct {
			Method   string  `json:"method"`
			Fraction float64 `json:"fraction"`
			Fault    struct {
				Code       string `json:"code"`
				Msg        string `json:"msg"`
				SubCode    string `json:"sub_code"`
				SubMsg     string `json:"sub_msg"`
				HTTPStatus int    `json:"http_status"`
				Delay      string `json:"delay"`
				Hang       bool   `json:"hang"`
				Unsigned   bool   `json:"unsigned"`
				BadSign    bool   `json:"bad_sign"`
				Deliver    bool   `json:"deliver"`
			} `json:"fault"`
		}
		if !readJSON(w, r, &req) {
			return
		}
		if req.Method == "" {
			req.Method = openapisim.MethodTemplateMessageSend
		}
		if req.Fraction < 0 || req.Fraction > 1 {
			writeError(w, errors.New("fraction must be from 0 to 1"))
			return
		}
		f := req.Fault
		var delay time.Duration
		if f.Delay != "" {
			var err error
			if delay, err = time.ParseDuration(f.Delay); err != nil || delay < 0 {
				writeError(w, fmt.Errorf("delay %q: want a duration such as 2s", f.Delay))
				return
			}
		}
		if req.Fraction > 0 && f.Code == "" && f.HTTPStatus == 0 && delay == 0 && !f.Hang && !f.Unsigned && !f.BadSign {
			writeError(w, errors.New("fault: say what fails (code, http_status, delay, hang, unsigned or bad_sign)"))
			return
		}
		sim.SetFailure(req.Method, req.Fraction, openapisim.Fault{Code: f.Code, Msg: f.Msg, SubCode: f.SubCode, SubMsg: f.SubMsg,
			HTTPStatus: f.HTTPStatus, Delay: delay, Hang: f.Hang, Unsigned: f.Unsigned, BadSign: f.BadSign, Deliver: f.Deliver})
		writeJSON(w, http.StatusOK, map[string]bool{"ok": true})
	})
	mux.HandleFunc("POST /sim/fail-user", func(w http.ResponseWriter, r *http.Request) {
		var req struct {
			User    string `json:"user"`
			Code    string `json:"code"`
			SubCode string `json:"sub_code"`
		}
		if !readJSON(w, r, &req) {
			return
		}
		if req.User == "" {
			writeError(w, errors.New("user is required"))
			return
		}
		sim.FailUser(req.User, req.Code, req.SubCode)
		writeJSON(w, http.StatusOK, map[string]bool{"ok": true})
	})
	mux.HandleFunc("POST /sim/subscribe", func(w http.ResponseWriter, r *http.Request) {
		var req struct {
			UserIDs    []string `json:"user_ids"`
			TemplateID string   `json:"template_id"`
			State      string   `json:"state"`
			Type       string   `json:"type"`
			Require    *bool    `json:"require"`
		}
		if !readJSON(w, r, &req) {
			return
		}
		if len(req.UserIDs) > 0 && req.TemplateID == "" {
			writeError(w, errors.New("template_id is required with user_ids"))
			return
		}
		if req.State == "" {
			req.State = "1"
		}
		if req.Type == "" {
			req.Type = "longterm"
		}
		for _, u := range req.UserIDs {
			sim.Subscribe(u, req.TemplateID, openapisim.Subscription{State: req.State, Type: req.Type})
		}
		if req.Require != nil {
			sim.RequireSubscription(*req.Require)
		}
		writeJSON(w, http.StatusOK, map[string]int{"subscribed": len(req.UserIDs)})
	})
	mux.HandleFunc("POST /sim/revoke", func(w http.ResponseWriter, r *http.Request) {
		var req struct {
			AppID     string `json:"app_id"`
			AuthAppID string `json:"auth_app_id"`
		}
		if !readJSON(w, r, &req) {
			return
		}
		if req.AppID == "" || req.AuthAppID == "" {
			writeError(w, errors.New("app_id and auth_app_id are required"))
			return
		}
		sim.Revoke(req.AppID, req.AuthAppID)
		writeJSON(w, http.StatusOK, map[string]bool{"ok": true})
	})
	mux.HandleFunc("POST /sim/code", func(w http.ResponseWriter, r *http.Request) {
		var req struct {
			AppID     string `json:"app_id"`
			AuthAppID string `json:"auth_app_id"`
			UserID    string `json:"user_id"`
		}
		if !readJSON(w, r, &req) {
			return
		}
		if req.AppID == "" || req.AuthAppID == "" {
			writeError(w, errors.New("app_id and auth_app_id are required"))
			return
		}
		writeJSON(w, http.StatusOK, map[string]string{"app_auth_code": sim.IssueCode(req.AppID, req.AuthAppID, req.UserID)})
	})
	return mux
}

// readJSON decodes r's body (8 MiB at most; unknown fields refused) into
// v, answering 400 when it cannot.
func readJSON(w http.ResponseWriter, r *http.Request, v any) bool {
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, 8<<20))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		writeError(w, fmt.Errorf("body: %v", err))
		return false
	}
	return true
}

func writeError(w http.ResponseWriter, err error) {
	writeJSON(w, http.StatusBadRequest, map[string]string{"error": err.Error()})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}
