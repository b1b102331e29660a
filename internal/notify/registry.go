package notify

import (
	"errors"
	"sort"
	"time"

	"github.com/alipay-notify-gateway/gateway/internal/seal"
)

// The methods the gateway has typed handling for. MethodAuthGranted is the
// notify_type of the older-style notification, which carries no msg_method.
const (
	MethodAuthCancelled       = "alipay.open.auth.appauth.cancelled"
	MethodMerchantConfirmed   = "alipay.open.mini.merchant.confirmed"
	MethodFastRegisterChanged = "alipay.open.mini.merchant.fastregister.changed"
	MethodAuditPassed         = "alipay.open.mini.version.audit.passed"
	MethodAuditRejected       = "alipay.open.mini.version.audit.rejected"
	MethodBaseAuditPassed     = "alipay.open.mini.version.baseaudit.passed"
	MethodAuthGranted         = "open_app_auth_notify"
)

// Handler decides what one verified notification does to business state.
// It is a pure function of the notification: the store applies the Change
// it returns in the notification's transaction. It returns an EINVALID
// *Error (see Unusable) when the notification cannot be used as it is,
// which stores it as failed; any other *Error (see Refuse) refuses the
// notification: it is not stored, and the channel answers fail with that
// error, so that Alipay delivers it again (a grant whose tokens cannot be
// sealed, a time ahead of the gateway's clock).
type Handler func(n *Notification) (Change, error)

// Registry maps a method to its handler.
type Registry struct {
	handlers map[string]Handler
}

// RegistryConfig is what the handlers need.
type RegistryConfig struct {
	// Sealer encrypts authorization tokens at rest. With none, grants are
	// refused (EUNAVAILABLE): a grant is never acknowledged without its
	// tokens kept, and Alipay resends it once a key is configured.
	Sealer *seal.Sealer
	// MaxClockSkew is how far ahead of a notification's ReceivedAt a time
	// in its biz_content (a grant's auth_time) may be; 5 minutes when zero.
	MaxClockSkew time.Duration
}

// NewRegistry returns the registry of every typed handler.
func NewRegistry(cfg RegistryConfig) *Registry {
	if cfg.MaxClockSkew <= 0 {
		cfg.MaxClockSkew = 5 * time.Minute
	}
	h := &handlers{sealer: cfg.Sealer, skew: cfg.MaxClockSkew}
	return &Registry{handlers: map[string]Handler{
		MethodAuthCancelled:       h.authCancelled,
		MethodAuthGranted:         h.authGranted,
		MethodMerchantConfirmed:   h.merchantConfirmed,
		MethodFastRegisterChanged: h.fastRegisterChanged,
		MethodAuditPassed:         h.audit,
		MethodAuditRejected:       h.audit,
		MethodBaseAuditPassed:     h.audit,
	}}
}

// Handler returns the handler for method, if there is one. A nil or empty
// Registry has none.
func (r *Registry) Handler(method string) (Handler, bool) {
	if r == nil {
		return nil, false
	}
	h, ok := r.handlers[method]
	return h, ok
}

// Methods returns the methods with a handler, sorted.
func (r *Registry) Methods() []string {
	out := make([]string, 0, len(r.handlers))
	for m := range r.handlers {
		out = append(out, m)
	}
	sort.Strings(out)
	return out
}

// handlers holds what the handler functions share; each lives in a file of
// its own (handler_*.go).
type handlers struct {
	sealer *seal.Sealer
	skew   time.Duration
}

// Unusable returns the error a handler gives for a verified notification
// that cannot be used: it is stored as failed with this message.
func Unusable(format string, args ...any) *Error {
	return Errorf(EINVALID, "unusable", format, args...)
}

// Refused reports whether err, a handler's error, refuses the notification
// (it is not stored) rather than keeps it as failed (Unusable).
func Refused(err error) bool {
	var e *Error
	return errors.As(err, &e) && e.Code != EINVALID
}
