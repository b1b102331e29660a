package notify

import (
	"bytes"
	"encoding/json"
	"strconv"
	"strings"
)

// decodeBiz decodes n's biz_content, a JSON object, into v. It returns an
// Unusable error when biz_content is not a JSON object.
func decodeBiz(n *Notification, v any) error {
	b := bytes.TrimSpace([]byte(n.BizContent))
	if len(b) == 0 || b[0] != '{' {
		return Unusable("biz_content is not a JSON object")
	}
	if err := json.Unmarshal(b, v); err != nil {
		return Unusable("biz_content is not valid JSON: %v", err)
	}
	return nil
}

// Text is a JSON value Alipay sends as a string or, sometimes, a number
// (auth_time, expires_in, ...).
type Text string

// UnmarshalJSON accepts a string, a number, a boolean or null.
func (t *Text) UnmarshalJSON(b []byte) error {
	b = bytes.TrimSpace(b)
	switch {
	case len(b) > 0 && b[0] == '"':
		var s string
		if err := json.Unmarshal(b, &s); err != nil {
			return err
		}
		*t = Text(s)
	case string(b) == "null":
		*t = ""
	default:
		*t = Text(b)
	}
	return nil
}

// Int64 returns t as a whole number, or 0 when it is empty, negative or not
// a number.
func (t Text) Int64() int64 {
	n, err := strconv.ParseInt(strings.TrimSpace(string(t)), 10, 64)
	if err != nil || n < 0 {
		return 0
	}
	return n
}

// rawObject keeps a JSON value as it came; an absent one reads as null.
func rawObject(m json.RawMessage) json.RawMessage {
	if len(bytes.TrimSpace(m)) == 0 {
		return json.RawMessage("null")
	}
	return m
}

// originOf returns the ordering identity of n at time at (ms); at 0 falls
// back to n's utc_timestamp.
func originOf(n *Notification, at int64) Origin {
	if at == 0 {
		at = n.UTCTimestamp
	}
	return Origin{AppID: n.AppID, NotifyID: n.NotifyID, At: at}
}
