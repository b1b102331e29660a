package notify

import "errors"

// Decided is a verified notification and what the application decided it
// does to business state, ready for the store: its handler's change, or the
// status it is kept with.
type Decided struct {
	*Notification
	// Change is what its handler decided, nil when there is none.
	Change Change
	// Status and Error are what it is stored with when it has no change:
	// StatusUnhandled (no handler for its method), or StatusFailed with
	// Error saying why (it could not be decoded, or its handler finds it
	// unusable). With a change, the store reads the status back from the
	// state it wrote: applied or stale.
	Status Status
	Error  string
	// Events are what the store writes with it: its notification.received,
	// and with a change the change's event, written if it applies.
	Events []Event
}

// Decide runs n's handler, if its method has one. It returns the *Error of
// a handler that refuses n (see Refused): n must then not be stored, and
// the channel answers fail; and a handler's error that is not an *Error (a
// bug, or no randomness to seal with) as it is. A notification that could
// not be decoded (n.Failure), or that its handler finds unusable, is
// decided as failed, never as an error: it is kept.
func (r *Registry) Decide(n *Notification) (Decided, error) {
	d := Decided{Notification: n, Status: StatusUnhandled, Events: []Event{receivedEvent(n)}}
	if n.Failure != "" {
		d.Status, d.Error = StatusFailed, n.Failure
		return d, nil
	}
	h, ok := r.Handler(n.Method)
	if !ok {
		return d, nil
	}
	change, err := h(n)
	var appErr *Error
	switch {
	case Refused(err):
		return Decided{}, err
	case errors.As(err, &appErr):
		d.Status, d.Error = StatusFailed, appErr.Message
		return d, nil
	case err != nil:
		return Decided{}, err
	}
	d.Change = change
	d.Events = append(d.Events, change.Event())
	return d, nil
}
