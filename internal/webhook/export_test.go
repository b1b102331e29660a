package webhook

// Envelope is envelope, for the tests.
var Envelope = envelope
