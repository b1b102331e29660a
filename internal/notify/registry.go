package notify

import "sort"

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
// which stores it as failed.
type Handler func(n *Notification) (Change, error)

// Registry maps a method to its handler.
type Registry struct {
	handlers map[string]Handler
}

// RegistryConfig is what the handlers need.
type RegistryConfig struct {
	// Sealer encrypts authorization tokens at rest. With none, grants are
	// stored as failed and their tokens are not kept.
	Sealer *Sealer
}

// NewRegistry returns the registry of every typed handler.
func NewRegistry(cfg RegistryConfig) *Registry {
	h := &handlers{sealer: cfg.Sealer}
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
	sealer *Sealer
}

// Unusable returns the error a handler gives for a verified notification
// that cannot be used: it is stored as failed with this message.
func Unusable(format string, args ...any) *Error {
	return Errorf(EINVALID, "unusable", format, args...)
}
