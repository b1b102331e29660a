package alipay

import (
	"github.com/alipay-notify-gateway/gateway/internal/notify"
)

// Alipay's signed string is k=v&k=v with nothing escaped, so one string can
// be read as several parameter sets: a V2-signed notification re-sent
// without sign_type and with "&sign_type=RSA2" folded into the value of
// notify_id yields the same string, and would verify as a new notify_id.
// Genuine parameter names and identifiers never hold '&' or '=', so the
// gateway refuses what does not have their real shape before it verifies:
// names are lower-case words, identifiers are checked one by one below.
// Free text (biz_content, and parameters the gateway does not know) may
// still hold them; a notification whose signed content the gateway has seen
// under another notify_id has no second effect (see Match.Digest).

// Limits on a notification form, checked before anything costly.
const (
	// MaxParams caps the parameters of a form: notifications carry 8 to
	// 40, and parsing, sorting and hashing thousands would let a forged
	// request cost far more than a genuine one.
	MaxParams = 100
	// MaxNameLen caps a parameter name.
	MaxNameLen = 64
	// MaxSignLen caps sign: a 4096-bit signature is 684 base64 characters.
	MaxSignLen = 1024
)

// shape is what an identifier's value looks like.
type shape struct {
	max   int
	valid func(s string) bool
	what  string // for the error: "letters, digits, ..."
}

// identifiers are the parameters whose values the gateway reads as
// identifiers, with their real shapes (from Alipay's documentation and
// samples: docs/signed-content.md). A value that does not fit is refused
// as bad_parameter.
var identifiers = map[string]shape{
	ParamAppID:       {32, digits, "digits"},
	ParamNotifyID:    {64, idChars, "letters, digits, '-', '_' or '.'"},
	ParamMsgMethod:   {128, dotted, "lower-case words joined by '.'"},
	ParamNotifyType:  {64, word, "a lower-case word with '_'"},
	ParamSignType:    {8, upperWord, "RSA2 or RSA"},
	ParamCharset:     {16, charsetName, "a charset name such as UTF-8 or GBK"},
	ParamVersion:     {16, version, "a version such as 1.1"},
	ParamTimestamp:   {16, digits, "milliseconds since the epoch"},
	ParamNotifyTime:  {19, dateTime, "yyyy-MM-dd HH:mm:ss"},
	ParamCertSN:      {64, hexDigits, "a hex cert SN"},
	ParamEncryptType: {16, upperWord, "AES"},
	ParamAuthAppID:   {32, digits, "digits"},
	ParamStatus:      {64, word, "a lower-case word with '_'"},
}

// checkShapes returns an EINVALID *notify.Error for the first parameter of f
// whose name is not a lower-case word (letters, digits, '_'), or whose value
// is an identifier of the wrong shape. Empty identifiers pass here: which
// ones are required is checkRequired's business.
func checkShapes(f Form) error {
	for k, v := range f {
		if !validName(k) {
			return notify.Errorf(notify.EINVALID, "bad_parameter", "parameter name %q is not a lower-case word of at most %d letters, digits or '_'", notify.Clip(k), MaxNameLen)
		}
		s, ok := identifiers[k]
		if !ok || v == "" {
			continue
		}
		if len(v) > s.max || !s.valid(v) {
			return notify.Errorf(notify.EINVALID, "bad_parameter", "%s %q is not %s (at most %d characters)", k, notify.Clip(v), s.what, s.max)
		}
	}
	return nil
}

// validName reports whether k is a parameter name as Alipay writes them.
func validName(k string) bool {
	if k == "" || len(k) > MaxNameLen {
		return false
	}
	for i := 0; i < len(k); i++ {
		if c := k[i]; !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '_') {
			return false
		}
	}
	return true
}

// ValidNotifyID reports whether id has the shape of a notify_id (or of a
// WebSocket message's x-msgId): letters, digits, '-', '_' or '.', at most
// 64 characters.
func ValidNotifyID(id string) bool {
	return id != "" && len(id) <= identifiers[ParamNotifyID].max && idChars(id)
}

func every(s string, ok func(c byte) bool) bool {
	for i := 0; i < len(s); i++ {
		if !ok(s[i]) {
			return false
		}
	}
	return s != ""
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }
func isLower(c byte) bool { return c >= 'a' && c <= 'z' }
func isUpper(c byte) bool { return c >= 'A' && c <= 'Z' }

func digits(s string) bool { return every(s, isDigit) }

func idChars(s string) bool {
	return every(s, func(c byte) bool { return isDigit(c) || isLower(c) || isUpper(c) || c == '-' || c == '_' || c == '.' })
}

func word(s string) bool {
	return every(s, func(c byte) bool { return isDigit(c) || isLower(c) || c == '_' })
}

func upperWord(s string) bool {
	return every(s, func(c byte) bool { return isDigit(c) || isUpper(c) })
}

func hexDigits(s string) bool {
	return every(s, func(c byte) bool { return isDigit(c) || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F' })
}

func charsetName(s string) bool {
	return every(s, func(c byte) bool { return isDigit(c) || isLower(c) || isUpper(c) || c == '-' || c == '_' })
}

// dotted: at least two lower-case words joined by '.'.
func dotted(s string) bool {
	parts := 0
	start := 0
	for i := 0; i <= len(s); i++ {
		if i == len(s) || s[i] == '.' {
			if !word(s[start:i]) {
				return false
			}
			parts++
			start = i + 1
		}
	}
	return parts >= 2
}

// version: numbers joined by '.'.
func version(s string) bool {
	start := 0
	for i := 0; i <= len(s); i++ {
		if i == len(s) || s[i] == '.' {
			if !digits(s[start:i]) {
				return false
			}
			start = i + 1
		}
	}
	return true
}

// dateTime: yyyy-MM-dd HH:mm:ss, digits where digits go (the calendar is
// timestampOf's business).
func dateTime(s string) bool {
	const layout = "0000-00-00 00:00:00"
	if len(s) != len(layout) {
		return false
	}
	for i := 0; i < len(s); i++ {
		if layout[i] == '0' {
			if !isDigit(s[i]) {
				return false
			}
		} else if s[i] != layout[i] {
			return false
		}
	}
	return true
}
