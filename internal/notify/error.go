package notify

import (
	"errors"
	"fmt"
)

// Error codes. They say what went wrong in terms a caller can act on; the
// HTTP layer maps each to a status in exactly one table (httpapi/reply.go).
const (
	EINVALID      = "invalid"      // malformed input: a bad form, a missing parameter, a bad query
	EUNVERIFIED   = "unverified"   // the notification's origin could not be proven
	ETOOEARLY     = "too_early"    // dated ahead of the gateway's clock: not trusted (yet)
	ETOOLARGE     = "too_large"    // the body is over the configured limit
	EUNAVAILABLE  = "unavailable"  // a dependency (the database) is down; retrying may help
	ENOTFOUND     = "not_found"    // no such object
	EUNAUTHORIZED = "unauthorized" // the caller did not prove who it is
	EFORBIDDEN    = "forbidden"    // the caller is known, but this request of theirs is refused (a form without its CSRF token)
	ECONFLICT     = "conflict"     // the object is not in a state that allows the operation
	EINTERNAL     = "internal"     // a bug or an unexpected failure
	ERATELIMITED  = "rate_limited" // too many requests from a client, or from all; retrying later may help
)

// Error is an application error. Reason is a short, stable, snake_case word
// for logs and metrics ("bad_signature", "unknown_app", ...); Message is for
// humans and never holds a secret.
type Error struct {
	Code    string
	Reason  string
	Message string
}

// Error implements the error interface.
func (e *Error) Error() string {
	if e.Reason != "" {
		return fmt.Sprintf("%s: %s: %s", e.Code, e.Reason, e.Message)
	}
	return fmt.Sprintf("%s: %s", e.Code, e.Message)
}

// Errorf returns an *Error with the given code and reason.
func Errorf(code, reason, format string, args ...any) *Error {
	return &Error{Code: code, Reason: reason, Message: fmt.Sprintf(format, args...)}
}

// ErrorCode returns the code of err if it is (or wraps) an *Error, and
// EINTERNAL otherwise. A nil err has no code.
func ErrorCode(err error) string {
	var e *Error
	if err == nil {
		return ""
	}
	if errors.As(err, &e) {
		return e.Code
	}
	return EINTERNAL
}

// ErrorReason returns the reason of err if it is (or wraps) an *Error, and
// "internal" otherwise.
func ErrorReason(err error) string {
	var e *Error
	if errors.As(err, &e) && e.Reason != "" {
		return e.Reason
	}
	if err == nil {
		return ""
	}
	return ErrorCode(err)
}

// ErrorMessage returns the human message of err if it is an *Error, and a
// generic text otherwise, so that internal details do not leak to clients.
func ErrorMessage(err error) string {
	var e *Error
	if errors.As(err, &e) {
		return e.Message
	}
	return "internal error"
}
