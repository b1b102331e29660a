package httpapi

import (
	"encoding/json"
	"net/http"

	"github.com/alipay-notify-gateway/gateway/internal/notify"
	"github.com/alipay-notify-gateway/gateway/internal/outbound"
)

// httpStatus is the one table that maps application error codes to HTTP
// statuses, for Alipay's replies and the ops API alike.
var httpStatus = map[string]int{
	notify.EINVALID:      http.StatusBadRequest,
	notify.EUNVERIFIED:   http.StatusForbidden,
	notify.ETOOEARLY:     http.StatusTooEarly, // dated ahead of the clock: Alipay resends it
	notify.ETOOLARGE:     http.StatusRequestEntityTooLarge,
	notify.EUNAVAILABLE:  http.StatusServiceUnavailable,
	notify.ENOTFOUND:     http.StatusNotFound,
	notify.EUNAUTHORIZED: http.StatusUnauthorized,
	notify.EFORBIDDEN:    http.StatusForbidden,
	notify.ECONFLICT:     http.StatusConflict,
	notify.EINTERNAL:     http.StatusInternalServerError,
	notify.ERATELIMITED:  http.StatusTooManyRequests,
	outbound.EBUSINESS:   http.StatusUnprocessableEntity, // Alipay refused the call
	outbound.EUPSTREAM:   http.StatusBadGateway,          // Alipay could not be reached, or its answer not trusted
}

// StatusOf returns the HTTP status for err: the ops console's pages
// answer with the same table.
func StatusOf(err error) int { return statusOf(err) }

// statusOf returns the HTTP status for err.
func statusOf(err error) int {
	if s, ok := httpStatus[notify.ErrorCode(err)]; ok {
		return s
	}
	return http.StatusInternalServerError
}

// Alipay's reply words. Only "success" (with 200) stops its retries.
const (
	replySuccess = "success"
	replyFail    = "fail"
)

// replyAlipay answers a notification: 200 success when err is nil (it is
// committed, or was already), otherwise fail with the status of err: 4xx for
// what a resend cannot fix, 5xx for what it can.
func replyAlipay(w http.ResponseWriter, err error) int {
	status, body := http.StatusOK, replySuccess
	if err != nil {
		status, body = statusOf(err), replyFail
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.WriteHeader(status)
	_, _ = w.Write([]byte(body))
	return status
}

// writeJSON answers v as JSON with status.
func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(v)
}

// errorBody is the ops API's error document.
type errorBody struct {
	Error struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	} `json:"error"`
}

// writeError answers err as the ops API's JSON error, with its status.
func writeError(w http.ResponseWriter, err error) {
	var b errorBody
	b.Error.Code = notify.ErrorCode(err)
	b.Error.Message = notify.ErrorMessage(err)
	writeJSON(w, statusOf(err), b)
}
