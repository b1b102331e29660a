package httpapi

import (
	"bufio"
	"bytes"
	"context"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"mime/multipart"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strings"

	"github.com/go-chi/chi/v5"

	"github.com/alipay-notify-gateway/gateway/internal/batchsend"
	"github.com/alipay-notify-gateway/gateway/internal/notify"
	"github.com/alipay-notify-gateway/gateway/internal/view"
)

// Batches creates, reads and steers bulk template message batches
// (batchsend.Admin). Each method returns an ENOTFOUND *notify.Error for an
// unknown batch, an ECONFLICT one for a transition its status does not
// allow, an EINVALID one for bad input (a *batchsend.RowsError naming bad
// recipients), and an EUNAVAILABLE one when the database cannot be
// reached.
type Batches interface {
	Create(ctx context.Context, r *batchsend.Request, key string) (*view.TemplateBatch, bool, error)
	Batch(ctx context.Context, id int64) (*view.TemplateBatch, error)
	Batches(ctx context.Context, f view.BatchFilter) ([]*view.TemplateBatch, string, error)
	Recipients(ctx context.Context, f view.RecipientFilter) ([]*view.BatchRecipient, string, error)
	Pause(ctx context.Context, id int64) (*view.TemplateBatch, error)
	Resume(ctx context.Context, id int64) (*view.TemplateBatch, error)
	Cancel(ctx context.Context, id int64) (*view.TemplateBatch, error)
	RetryUnknown(ctx context.Context, id int64) (*view.TemplateBatch, error)
}

// DefaultBatchMaxBytes caps a batch upload when Config.BatchMaxBytes is 0
// (TEMPLATE_BATCH_MAX_BYTES' default): 100,000 recipients with data of
// their own fit.
const DefaultBatchMaxBytes = 32 << 20

// maxBatchField caps one form value of a multipart upload.
const maxBatchField = 16 << 10

// batchFields are the template's fields of a CSV upload, as query
// parameters (text/csv) or form values (multipart/form-data).
var batchFields = []string{"app_id", "auth_app_id", "user_template_id", "page", "data", "precheck"}

func (s *Server) routesBatches(r chi.Router) {
	r.Post("/template-message-batches", s.createBatch)
	r.Get("/template-message-batches", s.listBatches)
	r.Get("/template-message-batches/{id}", s.getBatch)
	r.Get("/template-message-batches/{id}/recipients", s.listBatchRecipients)
	r.Post("/template-message-batches/{id}/pause", s.batchAction(Batches.Pause))
	r.Post("/template-message-batches/{id}/resume", s.batchAction(Batches.Resume))
	r.Post("/template-message-batches/{id}/cancel", s.batchAction(Batches.Cancel))
	r.Post("/template-message-batches/{id}/retry-unknown", s.batchAction(Batches.RetryUnknown))
}

// batchErrorBody is the ops API's error document with the error's reason
// and, for an upload refused for its recipients, the first bad rows.
type batchErrorBody struct {
	Error struct {
		Code    string               `json:"code"`
		Reason  string               `json:"reason"`
		Message string               `json:"message"`
		Rows    []batchsend.RowError `json:"rows,omitempty"`
		Bad     int                  `json:"bad_rows,omitempty"`
	} `json:"error"`
}

// writeBatchError answers err as writeError does, with its reason and
// the bad rows of a *batchsend.RowsError.
func writeBatchError(w http.ResponseWriter, err error) {
	var b batchErrorBody
	b.Error.Code, b.Error.Reason, b.Error.Message = notify.ErrorCode(err), notify.ErrorReason(err), notify.ErrorMessage(err)
	var re *batchsend.RowsError
	if errors.As(err, &re) {
		b.Error.Rows, b.Error.Bad = re.Rows, re.Bad
	}
	writeJSON(w, statusOf(err), b)
}

func badUpload(reason, format string, args ...any) error {
	return notify.Errorf(notify.EINVALID, reason, format, args...)
}

// createBatch stores a batch from a JSON body, a CSV body (the template's
// fields as query parameters) or a multipart upload (a "file" part holding
// the CSV, the fields as form values); the whole upload is checked before
// anything is stored. An Idempotency-Key header makes a retried upload
// store once.
func (s *Server) createBatch(w http.ResponseWriter, r *http.Request) {
	limit := s.cfg.BatchMaxBytes
	if limit <= 0 {
		limit = DefaultBatchMaxBytes
	}
	media, params, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	body := http.MaxBytesReader(w, r.Body, limit)
	var (
		req *batchsend.Request
		err error
	)
	switch media {
	case "application/json":
		if _, err = query(r); err == nil {
			req, err = readBatchJSON(body)
		}
	case "text/csv":
		var q url.Values
		if q, err = query(r, batchFields...); err == nil {
			req, err = readBatchCSV(body, func(k string) string { return q.Get(k) })
		}
	case "multipart/form-data":
		if _, err = query(r); err == nil {
			req, err = readBatchMultipart(body, params["boundary"])
		}
	default:
		err = badUpload("bad_content_type", "Content-Type must be application/json, text/csv or multipart/form-data, not %q", notify.Clip(media))
	}
	var tooLarge *http.MaxBytesError
	if errors.As(err, &tooLarge) {
		err = badUpload("body_too_large", "the upload is over %d bytes (TEMPLATE_BATCH_MAX_BYTES); nothing was queued", limit)
	}
	if err != nil {
		writeBatchError(w, err)
		return
	}
	v, replayed, err := s.cfg.Batches.Create(r.Context(), req, r.Header.Get("Idempotency-Key"))
	if err != nil {
		writeBatchError(w, err)
		return
	}
	if replayed {
		w.Header().Set("Idempotent-Replayed", "true")
		writeJSON(w, http.StatusOK, v)
		return
	}
	writeJSON(w, http.StatusCreated, v)
}

// jsonBatch is the JSON upload: the recipients are decoded one by one, so
// that a bad one is named by its row.
type jsonBatch struct {
	AppID          string            `json:"app_id"`
	AuthAppID      string            `json:"auth_app_id"`
	UserTemplateID string            `json:"user_template_id"`
	Page           string            `json:"page"`
	Data           json.RawMessage   `json:"data"`
	Precheck       bool              `json:"precheck"`
	Recipients     []json.RawMessage `json:"recipients"`
}

type jsonRecipient struct {
	ToUserID string          `json:"to_user_id"`
	ToOpenID string          `json:"to_open_id"`
	Data     json.RawMessage `json:"data"`
}

// readBatchJSON reads a JSON upload. It returns an EINVALID *notify.Error
// (bad_json) when the body is not one JSON object of the upload's fields,
// and the body's *http.MaxBytesError.
func readBatchJSON(body io.Reader) (*batchsend.Request, error) {
	var in jsonBatch
	dec := json.NewDecoder(body)
	dec.DisallowUnknownFields()
	if err := dec.Decode(&in); err != nil {
		var tooLarge *http.MaxBytesError
		if errors.As(err, &tooLarge) {
			return nil, err
		}
		return nil, badUpload("bad_json", `the body must be a JSON batch {"user_template_id", "page", "data", "recipients": [...]}: %v`, err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, badUpload("bad_json", "the body holds more than one JSON value")
	}
	req := &batchsend.Request{AppID: in.AppID, AuthAppID: in.AuthAppID, UserTemplateID: in.UserTemplateID, Page: in.Page,
		Data: in.Data, Precheck: in.Precheck, Recipients: make([]batchsend.Recipient, len(in.Recipients))}
	for i, raw := range in.Recipients {
		var rc jsonRecipient
		d := json.NewDecoder(bytes.NewReader(raw))
		d.DisallowUnknownFields()
		if err := d.Decode(&rc); err != nil {
			req.Recipients[i].Err = fmt.Sprintf(`not a recipient {"to_user_id" or "to_open_id", "data"}: %v`, err)
			continue
		}
		req.Recipients[i] = batchsend.Recipient{ToUserID: rc.ToUserID, ToOpenID: rc.ToOpenID, Data: rc.Data}
	}
	return req, nil
}

// keywordColumn is a CSV column holding a keyword's value.
var keywordColumn = regexp.MustCompile(`^keyword[1-9][0-9]*$`)

// readBatchCSV reads a CSV upload: a header row naming the columns
// (to_user_id and/or to_open_id; data, a JSON object, or keyword1, ...,
// each a keyword's value), then a recipient a row. field gives the
// template's fields. It returns an EINVALID *notify.Error for a bad
// header or field, and the body's *http.MaxBytesError; a bad row is the
// row's error in the request, for the check to name.
func readBatchCSV(body io.Reader, field func(string) string) (*batchsend.Request, error) {
	req := &batchsend.Request{AppID: field("app_id"), AuthAppID: field("auth_app_id"), UserTemplateID: field("user_template_id"),
		Page: field("page")}
	if d := field("data"); d != "" {
		req.Data = json.RawMessage(d)
	}
	switch p := field("precheck"); p {
	case "", "false", "0":
	case "true", "1":
		req.Precheck = true
	default:
		return nil, badUpload("bad_batch", "precheck must be true or false, not %q", notify.Clip(p))
	}
	br := bufio.NewReaderSize(body, 64<<10)
	// A UTF-8 byte order mark (Excel writes one) is not part of the first
	// field: left in, it would make a quoted header's quote a bare one.
	if bom, err := br.Peek(3); err == nil && string(bom) == "\ufeff" {
		_, _ = br.Discard(3)
	}
	cr := csv.NewReader(br)
	cr.ReuseRecord = true
	header, err := cr.Read()
	if err != nil {
		var tooLarge *http.MaxBytesError
		if errors.As(err, &tooLarge) {
			return nil, err
		}
		if err == io.EOF {
			return nil, badUpload("bad_csv", "the CSV is empty: want a header row (to_user_id or to_open_id, data or keyword1, ...) and a recipient a row")
		}
		return nil, badUpload("bad_csv", "the CSV header does not parse: %v", err)
	}
	header = slices.Clone(header) // ReuseRecord: the next Read reuses it
	cols := map[string]int{}
	var keywords []int
	for i, h := range header {
		h = strings.TrimSpace(strings.TrimPrefix(h, "\ufeff"))
		if _, dup := cols[h]; dup {
			return nil, badUpload("bad_csv", "the CSV header names %q twice", notify.Clip(h))
		}
		switch {
		case h == "to_user_id", h == "to_open_id", h == "data":
		case keywordColumn.MatchString(h):
			keywords = append(keywords, i)
		default:
			return nil, badUpload("bad_csv", "the CSV header names %q: the columns are to_user_id, to_open_id, data, keyword1, keyword2, ...", notify.Clip(h))
		}
		cols[h] = i
	}
	_, hasUser := cols["to_user_id"]
	_, hasOpen := cols["to_open_id"]
	_, hasData := cols["data"]
	switch {
	case !hasUser && !hasOpen:
		return nil, badUpload("bad_csv", "the CSV header names neither to_user_id nor to_open_id")
	case hasData && len(keywords) > 0:
		return nil, badUpload("bad_csv", "the CSV header names data and keyword columns: give one or the other")
	}
	cell := func(rec []string, name string) string {
		if i, ok := cols[name]; ok && i < len(rec) {
			return strings.TrimSpace(rec[i])
		}
		return ""
	}
	for {
		rec, err := cr.Read()
		if err == io.EOF {
			break
		}
		var tooLarge *http.MaxBytesError
		if errors.As(err, &tooLarge) {
			return nil, err
		}
		var rc batchsend.Recipient
		var pe *csv.ParseError
		switch {
		case err == nil:
			// Only a record read whole has its fields' positions.
			rc.Line, _ = cr.FieldPos(0)
		case errors.As(err, &pe):
			rc.Line = pe.StartLine // where the record began
		}
		switch {
		case pe != nil && errors.Is(err, csv.ErrFieldCount):
			rc.Err = fmt.Sprintf("%d fields; the header has %d", len(rec), len(header))
		case err != nil:
			// The rest cannot be read reliably past a broken quote.
			rc.Err = fmt.Sprintf("the CSV does not parse from here: %v", err)
			req.Recipients = append(req.Recipients, rc)
			return req, nil
		default:
			rc.ToUserID, rc.ToOpenID = cell(rec, "to_user_id"), cell(rec, "to_open_id")
			if d := cell(rec, "data"); d != "" {
				rc.Data = json.RawMessage(d)
			}
			if len(keywords) > 0 {
				rc.Data = keywordData(header, keywords, rec)
			}
		}
		req.Recipients = append(req.Recipients, rc)
	}
	return req, nil
}

// keywordData makes a row's data of its keyword columns, in the header's
// order (Alipay takes the keywords in the template's order):
// {"keyword1": {"value": "..."}, ...}.
func keywordData(header []string, keywords []int, rec []string) json.RawMessage {
	var b bytes.Buffer
	b.WriteByte('{')
	for n, i := range keywords {
		if n > 0 {
			b.WriteByte(',')
		}
		name, _ := json.Marshal(strings.TrimSpace(strings.TrimPrefix(header[i], "\ufeff")))
		value, _ := json.Marshal(rec[i])
		b.Write(name)
		b.WriteString(`:{"value":`)
		b.Write(value)
		b.WriteByte('}')
	}
	b.WriteByte('}')
	return b.Bytes()
}

// readBatchMultipart reads a multipart upload: a "file" part holding the
// CSV, the template's fields as form values. It returns an EINVALID
// *notify.Error for a bad form or a missing file, readBatchCSV's errors,
// and the body's *http.MaxBytesError.
func readBatchMultipart(body io.Reader, boundary string) (*batchsend.Request, error) {
	if boundary == "" {
		return nil, badUpload("bad_form", "multipart/form-data without a boundary")
	}
	mr := multipart.NewReader(body, boundary)
	fields := map[string]string{}
	var file []byte
	haveFile := false
	for {
		p, err := mr.NextPart()
		if err == io.EOF {
			break
		}
		if err != nil {
			var tooLarge *http.MaxBytesError
			if errors.As(err, &tooLarge) {
				return nil, err
			}
			return nil, badUpload("bad_form", "the multipart body does not parse: %v", err)
		}
		name := p.FormName()
		switch {
		case name == "file":
			if haveFile {
				return nil, badUpload("bad_form", "the form has two file parts")
			}
			if file, err = io.ReadAll(p); err != nil {
				var tooLarge *http.MaxBytesError
				if errors.As(err, &tooLarge) {
					return nil, err
				}
				return nil, badUpload("bad_form", "the file part does not read: %v", err)
			}
			haveFile = true
		case isBatchField(name):
			if _, dup := fields[name]; dup {
				return nil, badUpload("bad_form", "the form gives %s twice", name)
			}
			v, err := io.ReadAll(io.LimitReader(p, maxBatchField+1))
			if err != nil {
				var tooLarge *http.MaxBytesError
				if errors.As(err, &tooLarge) {
					return nil, err
				}
				return nil, badUpload("bad_form", "the form value %s does not read: %v", name, err)
			}
			if len(v) > maxBatchField {
				return nil, badUpload("bad_form", "the form value %s is over %d bytes", name, maxBatchField)
			}
			fields[name] = string(v)
		default:
			return nil, badUpload("bad_form", "the form has a part %q: the parts are file and %s", notify.Clip(name), strings.Join(batchFields, ", "))
		}
		p.Close()
	}
	if !haveFile {
		return nil, badUpload("bad_form", `the form has no "file" part holding the CSV`)
	}
	return readBatchCSV(bytes.NewReader(file), func(k string) string { return fields[k] })
}

func isBatchField(name string) bool {
	for _, f := range batchFields {
		if f == name {
			return true
		}
	}
	return false
}

func (s *Server) getBatch(w http.ResponseWriter, r *http.Request) {
	id, ok := idOnly(w, r)
	if !ok {
		return
	}
	v, err := s.cfg.Batches.Batch(r.Context(), id)
	answer(w, v, err)
}

// batchStatuses are the statuses a listing filters on.
var batchStatuses = []string{notify.BatchRunning, notify.BatchPaused, notify.BatchCancelled, notify.BatchStopped, notify.BatchFinished}

func oneOf(v string, set []string) bool {
	for _, s := range set {
		if s == v {
			return true
		}
	}
	return v == ""
}

func (s *Server) listBatches(w http.ResponseWriter, r *http.Request) {
	q, err := query(r, "after", "limit", "status", "app_id")
	if err != nil {
		writeError(w, err)
		return
	}
	f := view.BatchFilter{AppID: q.Get("app_id"), Status: q.Get("status"), After: q.Get("after")}
	if !oneOf(f.Status, batchStatuses) {
		writeError(w, notify.Errorf(notify.EINVALID, "bad_query", "status must be one of %s", strings.Join(batchStatuses, ", ")))
		return
	}
	if f.Limit, err = limitParam(q); err != nil {
		writeError(w, err)
		return
	}
	items, next, err := s.cfg.Batches.Batches(r.Context(), f)
	answerPage(w, items, next, err)
}

// recipientsPage is the answer of a batch's recipients listing.
type recipientsPage struct {
	Recipients []*view.BatchRecipient `json:"recipients"`
	Next       string                 `json:"next"`
}

func (s *Server) listBatchRecipients(w http.ResponseWriter, r *http.Request) {
	id, err := idParam(r)
	if err != nil {
		writeError(w, err)
		return
	}
	q, err := query(r, "status", "after", "limit")
	if err != nil {
		writeError(w, err)
		return
	}
	f := view.RecipientFilter{BatchID: id, Status: q.Get("status"), After: q.Get("after")}
	if !oneOf(f.Status, notify.RecipientStatuses()) {
		writeError(w, notify.Errorf(notify.EINVALID, "bad_query", "status must be one of %s", strings.Join(notify.RecipientStatuses(), ", ")))
		return
	}
	if f.Limit, err = limitParam(q); err != nil {
		writeError(w, err)
		return
	}
	items, next, err := s.cfg.Batches.Recipients(r.Context(), f)
	if err != nil {
		writeError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, recipientsPage{Recipients: items, Next: next})
}

// batchAction answers a change of the path's batch (pause, resume,
// cancel, retry-unknown) with the batch as it is after.
func (s *Server) batchAction(do func(Batches, context.Context, int64) (*view.TemplateBatch, error)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		id, ok := idOnly(w, r)
		if !ok {
			return
		}
		v, err := do(s.cfg.Batches, r.Context(), id)
		if err != nil {
			writeBatchError(w, err)
			return
		}
		writeJSON(w, http.StatusOK, v)
	}
}
