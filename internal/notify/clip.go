package notify

import (
	"strconv"
	"unicode/utf8"
)

// ClipLen is how much of an unverified value Clip keeps.
const ClipLen = 128

// Clip returns s cut to at most ClipLen bytes (on a character boundary),
// with the full length noted, for logs and error messages that quote what
// a sender sent: one forged request must not make a 60 KB log line.
func Clip(s string) string { return ClipTo(s, ClipLen) }

// ClipTo is Clip with a limit of n bytes.
func ClipTo(s string, n int) string {
	if len(s) <= n {
		return s
	}
	cut := n
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "…(" + strconv.Itoa(len(s)) + " bytes)"
}
