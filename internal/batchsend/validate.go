package batchsend

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strings"
	"unicode/utf8"

	"github.com/alipay-notify-gateway/gateway/internal/notify"
	"github.com/alipay-notify-gateway/gateway/internal/outbound"
)

// Limits of a batch, Alipay's where it documents them (see
// docs/template-message-batches.md).
const (
	// DefaultMaxRecipients is TEMPLATE_BATCH_MAX_RECIPIENTS' default.
	DefaultMaxRecipients = 100000
	// MaxTemplateID and MaxPage are the longest user_template_id and page
	// (characters); MaxDataLength the longest data as sent, MaxValue the
	// longest keyword value.
	MaxTemplateID = 64
	MaxPage       = 128
	MaxDataLength = 2048
	MaxValue      = 50
	// MaxOpenID is the longest to_open_id taken; a to_user_id is 2088 and
	// 12 to 16 digits more.
	MaxOpenID = 128
	// MaxRowErrors is how many bad rows a refusal names.
	MaxRowErrors = 20
)

// Request is a batch to create, as the ops API read it (JSON, CSV or a
// multipart upload).
type Request struct {
	AppID          string          `json:"app_id"`
	AuthAppID      string          `json:"auth_app_id"`
	UserTemplateID string          `json:"user_template_id"`
	Page           string          `json:"page"`
	Data           json.RawMessage `json:"data"` // shared; optional when every recipient has data
	Precheck       bool            `json:"precheck"`
	Recipients     []Recipient     `json:"recipients"`
}

// Recipient is one recipient of a Request.
type Recipient struct {
	ToUserID string          `json:"to_user_id"`
	ToOpenID string          `json:"to_open_id"`
	Data     json.RawMessage `json:"data"`
	// Line is its line in an uploaded CSV file (0 for JSON), and Err what
	// made the row unreadable there, if anything.
	Line int    `json:"-"`
	Err  string `json:"-"`
}

// RowError is what is wrong with one recipient: Row is its place in the
// upload (1 for the first recipient), Line its line in a CSV file.
type RowError struct {
	Row   int    `json:"row"`
	Line  int    `json:"line,omitempty"`
	Error string `json:"error"`
}

// RowsError refuses an upload for its bad rows. It unwraps to an EINVALID
// *notify.Error (bad_recipients, or too_many_recipients); Rows are the
// first MaxRowErrors bad rows, Bad how many there are in all.
type RowsError struct {
	Rows []RowError
	Bad  int
	err  *notify.Error
}

func (e *RowsError) Error() string { return e.err.Error() }

// Unwrap returns the domain error.
func (e *RowsError) Unwrap() error { return e.err }

// rows collects bad rows.
type rows struct {
	list []RowError
	bad  int
}

func (r *rows) add(row, line int, format string, args ...any) {
	r.bad++
	if len(r.list) < MaxRowErrors {
		r.list = append(r.list, RowError{Row: row, Line: line, Error: fmt.Sprintf(format, args...)})
	}
}

func (r *rows) err(total int) error {
	if r.bad == 0 {
		return nil
	}
	first := r.list[0]
	where := fmt.Sprintf("row %d", first.Row)
	if first.Line > 0 {
		where += fmt.Sprintf(" (line %d)", first.Line)
	}
	return &RowsError{Rows: r.list, Bad: r.bad, err: notify.Errorf(notify.EINVALID, "bad_recipients",
		"%d of %d recipients are bad; nothing was queued (the first %d are listed); %s: %s",
		r.bad, total, len(r.list), where, first.Error)}
}

func bad(format string, args ...any) error {
	return notify.Errorf(notify.EINVALID, "bad_batch", format, args...)
}

// checkUserID reports what is wrong with a to_user_id: Alipay's are "2088"
// and 12 digits (16 in all, "usually"); up to 20 digits are taken.
func checkUserID(id string) string {
	if len(id) < 16 || len(id) > 20 || !strings.HasPrefix(id, "2088") {
		return "to_user_id must be an Alipay user id: 2088 and 12 to 16 digits more"
	}
	for i := 0; i < len(id); i++ {
		if id[i] < '0' || id[i] > '9' {
			return "to_user_id must be an Alipay user id: digits only"
		}
	}
	return ""
}

// checkOpenID reports what is wrong with a to_open_id: letters, digits, -
// and _, at most MaxOpenID, and not a 2088 user id.
func checkOpenID(id string) string {
	if len(id) > MaxOpenID {
		return fmt.Sprintf("to_open_id is longer than %d characters", MaxOpenID)
	}
	digits := true
	for i := 0; i < len(id); i++ {
		c := id[i]
		switch {
		case c >= '0' && c <= '9':
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c == '-', c == '_':
			digits = false
		default:
			return "to_open_id must be letters, digits, - and _"
		}
	}
	if digits && strings.HasPrefix(id, "2088") {
		return "to_open_id is a 2088 user id: give it as to_user_id"
	}
	return ""
}

// checkData normalizes a template's data (outbound.NormalizeData) and
// checks it as Alipay does: every keyword {"value": "..."} with a value of
// at most MaxValue characters, and at most MaxDataLength characters in
// all. It returns the compact data, or what is wrong.
func checkData(raw json.RawMessage) (json.RawMessage, string) {
	data, err := outbound.NormalizeData(raw)
	if err != nil {
		return nil, notify.ErrorMessage(err)
	}
	if n := utf8.RuneCount(data); n > MaxDataLength {
		return nil, fmt.Sprintf("data is %d characters as sent; Alipay takes at most %d", n, MaxDataLength)
	}
	var obj map[string]json.RawMessage
	_ = json.Unmarshal(data, &obj) // NormalizeData checked it
	for k, v := range obj {
		var kw struct {
			Value *string `json:"value"`
		}
		if json.Unmarshal(v, &kw) != nil || kw.Value == nil {
			return nil, fmt.Sprintf(`data: %s must be {"value": "..."}`, notify.Clip(k))
		}
		if n := utf8.RuneCountInString(*kw.Value); n > MaxValue {
			return nil, fmt.Sprintf("data: the value of %s is %d characters; Alipay takes at most %d (USER_KEYWORD_LENGTH_ERROR)", notify.Clip(k), n, MaxValue)
		}
	}
	return data, ""
}

// checked is a Request checked whole: the batch and its recipients as
// they are stored.
type checked struct {
	batch      notify.TemplateBatch
	recipients []notify.NewRecipient
}

// check validates r whole, maxRecipients at most, for the ISV app appID.
// It returns an EINVALID *notify.Error for a bad template field, and a
// *RowsError naming the first bad rows: a recipient with neither or both
// of to_user_id and to_open_id, a malformed id, bad data (or none, without
// shared data), one given twice, one over maxRecipients.
func check(r *Request, appID string, maxRecipients int) (*checked, error) {
	switch {
	case r.UserTemplateID == "":
		return nil, bad("user_template_id is required")
	case utf8.RuneCountInString(r.UserTemplateID) > MaxTemplateID:
		return nil, bad("user_template_id is longer than %d characters", MaxTemplateID)
	case r.Page == "":
		return nil, bad("page is required")
	case utf8.RuneCountInString(r.Page) > MaxPage:
		return nil, bad("page is longer than %d characters", MaxPage)
	case len(r.AuthAppID) > 32 || strings.ContainsFunc(r.AuthAppID, func(c rune) bool { return c < '0' || c > '9' }):
		return nil, bad("auth_app_id must be a merchant app id (digits)")
	case len(r.Recipients) == 0:
		return nil, bad("recipients is empty: give 1 to %d", maxRecipients)
	}
	c := &checked{batch: notify.TemplateBatch{AppID: appID, AuthAppID: r.AuthAppID, UserTemplateID: r.UserTemplateID,
		Page: r.Page, Precheck: r.Precheck}}
	if len(r.Data) > 0 && string(r.Data) != "null" {
		data, why := checkData(r.Data)
		if why != "" {
			return nil, bad("%s", why)
		}
		c.batch.Data = data
	}
	if n := len(r.Recipients); n > maxRecipients {
		var rs rows
		rs.add(maxRecipients+1, r.Recipients[maxRecipients].Line, "over the limit of %d recipients a batch (%d given)", maxRecipients, n)
		e := rs.err(n).(*RowsError)
		e.err.Reason = "too_many_recipients"
		e.err.Message = fmt.Sprintf("%d recipients given; a batch takes at most %d (TEMPLATE_BATCH_MAX_RECIPIENTS); nothing was queued", n, maxRecipients)
		return nil, e
	}
	var rs rows
	seen := make(map[string]int, len(r.Recipients))
	c.recipients = make([]notify.NewRecipient, 0, len(r.Recipients))
	for i, in := range r.Recipients {
		row := i + 1
		if in.Err != "" {
			rs.add(row, in.Line, "%s", in.Err)
			continue
		}
		var why, key string
		switch {
		case in.ToUserID == "" && in.ToOpenID == "":
			why = "to_user_id or to_open_id is required"
		case in.ToUserID != "" && in.ToOpenID != "":
			why = "give to_user_id or to_open_id, not both"
		case in.ToUserID != "":
			why, key = checkUserID(in.ToUserID), "u"+in.ToUserID
		default:
			why, key = checkOpenID(in.ToOpenID), "o"+in.ToOpenID
		}
		out := notify.NewRecipient{ToUserID: in.ToUserID, ToOpenID: in.ToOpenID}
		if why == "" && len(in.Data) > 0 && string(in.Data) != "null" {
			out.Data, why = checkData(in.Data)
		}
		if why == "" && out.Data == nil && c.batch.Data == nil {
			why = "no data, and the batch has no shared data"
		}
		if why == "" {
			if first, dup := seen[key]; dup {
				why = fmt.Sprintf("the same recipient as row %d: each is sent once", first)
			}
		}
		if why != "" {
			rs.add(row, in.Line, "%s", why)
			continue
		}
		seen[key] = row
		c.recipients = append(c.recipients, out)
	}
	if err := rs.err(len(r.Recipients)); err != nil {
		return nil, err
	}
	c.batch.RequestHash = c.hash()
	return c, nil
}

// hash identifies the checked request, so that an Idempotency-Key reused
// for another is caught.
func (c *checked) hash() string {
	h := sha256.New()
	enc := json.NewEncoder(h)
	b := c.batch
	_ = enc.Encode([]any{b.AppID, b.AuthAppID, b.UserTemplateID, b.Page, b.Data, b.Precheck, len(c.recipients)})
	for _, r := range c.recipients {
		_ = enc.Encode([]any{r.ToUserID, r.ToOpenID, r.Data})
	}
	return hex.EncodeToString(h.Sum(nil))
}
