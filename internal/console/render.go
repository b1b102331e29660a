package console

import (
	"bytes"
	"encoding/json"
	"html/template"
	"io/fs"
	"net/http"
	"net/url"
	"sort"
	"strings"
	"time"

	"github.com/alipay-notify-gateway/gateway/internal/httpapi"
	"github.com/alipay-notify-gateway/gateway/internal/notify"
)

// templates are the pages' templates by name: each is the layout with one
// file of templates/ parsed into it.
type templates map[string]*template.Template

// funcs are the templates' helpers that need no request.
var funcs = template.FuncMap{
	"pretty": prettyJSON,
	"clip":   func(n int, s string) string { return notify.ClipTo(s, n) },
	"join":   strings.Join,
	"add":    func(a, b int) int { return a + b },
	"path":   url.PathEscape,
	"pair":   func(d, v any) pair { return pair{d, v} },
	"list":   func(v ...string) []string { return v },
	"days":   func(n int) time.Duration { return time.Duration(n) * 24 * time.Hour },
}

func parseTemplates() templates {
	base := template.Must(template.New("layout.html").Funcs(funcs).ParseFS(files, "templates/layout.html"))
	names, err := fs.Glob(files, "templates/*.html")
	if err != nil {
		panic(err)
	}
	out := templates{}
	for _, name := range names {
		if name == "templates/layout.html" {
			continue
		}
		t := template.Must(template.Must(base.Clone()).ParseFS(files, name))
		out[strings.TrimSuffix(strings.TrimPrefix(name, "templates/"), ".html")] = t
	}
	return out
}

// pair hands a shared template the page's data and a value of its own.
type pair struct{ D, V any }

// navItem is an entry of the navigation.
type navItem struct {
	Name, Href string
	Active     bool
}

// pageData is what every template gets: the page's own data in .Page, and
// the helpers of its language and time zone as methods.
type pageData struct {
	L        lang
	Title    string
	Nav      []navItem
	CSRF     string // the session's CSRF token; "" when signed out
	SignedIn bool
	Here     string // this page's URI, for the language switch
	Flash    string // a message key, after an action
	Page     any
	loc      *time.Location
	now      time.Time
}

// T returns a message in the page's language.
func (d *pageData) T(key string, args ...any) string { return d.L.T(key, args...) }

// Lang is the page's lang attribute.
func (d *pageData) Lang() string { return d.L.htmlLang() }

// Other is the language to switch to: its code and its name.
func (d *pageData) Other() [2]string {
	if d.L == en {
		return [2]string{"zh", "中文"}
	}
	return [2]string{"en", "English"}
}

// timeOf is v, a time.Time or a *time.Time, and whether it is set.
func timeOf(v any) (time.Time, bool) {
	var t time.Time
	switch x := v.(type) {
	case time.Time:
		t = x
	case *time.Time:
		if x != nil {
			t = *x
		}
	}
	return t, !t.IsZero()
}

// Time shows t in the console's time zone; "-" for none. It takes a
// time.Time or a *time.Time.
func (d *pageData) Time(v any) string {
	t, ok := timeOf(v)
	if !ok {
		return "-"
	}
	return t.In(d.loc).Format("2006-01-02 15:04:05 MST")
}

// Ago says how long before now t was, shortly ("5m", "3h", "2d").
func (d *pageData) Ago(v any) string {
	t, ok := timeOf(v)
	if !ok {
		return "-"
	}
	return d.Dur(d.now.Sub(t))
}

// Dur shows a duration shortly, in the page's language.
func (d *pageData) Dur(x time.Duration) string {
	neg := x < 0
	if neg {
		x = -x
	}
	var s string
	switch {
	case x < time.Minute:
		s = d.T("dur.s", int(x/time.Second))
	case x < time.Hour:
		s = d.T("dur.m", int(x/time.Minute))
	case x < 48*time.Hour:
		s = d.T("dur.h", int(x/time.Hour))
	default:
		s = d.T("dur.d", int(x/(24*time.Hour)))
	}
	if neg {
		return "-" + s
	}
	return s
}

// Until says how long after now t is; negative when it has passed.
func (d *pageData) Until(t *time.Time) time.Duration {
	if t == nil {
		return 0
	}
	return t.Sub(d.now)
}

// Status is the message of a status word (a notification's, an
// authorization's, an audit's, a delivery's), or the word itself when the
// table has none: Alipay's values are kept as sent.
func (d *pageData) Status(s string) string {
	if _, ok := messages["status."+s]; ok {
		return d.T("status." + s)
	}
	return s
}

// prettyJSON indents a JSON value; anything else is returned as it is.
func prettyJSON(v any) string {
	var raw []byte
	switch x := v.(type) {
	case json.RawMessage:
		raw = x
	case []byte:
		raw = x
	case string:
		raw = []byte(x)
	default:
		b, _ := json.Marshal(x)
		raw = b
	}
	var out bytes.Buffer
	if err := json.Indent(&out, raw, "", "  "); err != nil {
		return string(raw)
	}
	return out.String()
}

// sortedKeys returns m's keys, sorted.
func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

func (c *Console) data(r *http.Request, title string, p any) *pageData {
	l := langOf(r.Context())
	d := &pageData{L: l, Title: l.T(title), Here: r.URL.RequestURI(), Page: p, loc: c.cfg.Location, now: c.now(),
		Flash: flashKey(r.URL.Query().Get("done"))}
	if s := sessionOf(r.Context()); s != nil {
		d.SignedIn, d.CSRF = true, s.CSRFToken
		path := strings.TrimPrefix(r.URL.Path, Base)
		for _, p := range c.pages {
			active := path == p.path || p.path != "/" && strings.HasPrefix(path, p.path+"/") ||
				p.path == "/" && (path == "" || path == "/")
			d.Nav = append(d.Nav, navItem{Name: "nav." + p.name, Href: Base + p.path, Active: active})
		}
	}
	return d
}

// render answers 200 with the page name (a template) titled title (a
// message key).
func (c *Console) render(w http.ResponseWriter, r *http.Request, name, title string, p any) {
	c.renderStatus(w, r, http.StatusOK, name, title, p)
}

func (c *Console) renderStatus(w http.ResponseWriter, r *http.Request, status int, name, title string, p any) {
	t, ok := c.tmpl[name]
	if !ok {
		panic("console: no template " + name)
	}
	var buf bytes.Buffer
	if err := t.ExecuteTemplate(&buf, "layout", c.data(r, title, p)); err != nil {
		c.log.Error().Err(err).Str("page", name).Msg("console: page not rendered")
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	_, _ = w.Write(buf.Bytes())
}

// errorData is the error page's.
type errorData struct {
	Status  int
	Key     string // the message of the error's kind
	Message string // the error's own message (English, from the code)
}

// fail answers err as an error page with its status (httpapi's table).
func (c *Console) fail(w http.ResponseWriter, r *http.Request, err error) {
	status := httpapi.StatusOf(err)
	key := "error." + notify.ErrorCode(err)
	if _, ok := messages[key]; !ok {
		key = "error.internal"
	}
	msg := notify.ErrorMessage(err)
	if status >= 500 {
		c.log.Error().Err(err).Str("path", r.URL.Path).Msg("console: request failed")
		if notify.ErrorCode(err) == notify.EINTERNAL {
			msg = ""
		}
	}
	c.renderStatus(w, r, status, "error", "error.title", errorData{Status: status, Key: key, Message: msg})
}

// done redirects, after an action, to path with its flash message
// (flashes, by name).
func (c *Console) done(w http.ResponseWriter, r *http.Request, path, flash string) {
	sep := "?"
	if strings.Contains(path, "?") {
		sep = "&"
	}
	http.Redirect(w, r, path+sep+"done="+url.QueryEscape(flash), http.StatusSeeOther)
}

// flashes are the messages an action's redirect may show, by name.
var flashes = map[string]string{
	"reprocessed": "flash.reprocessed",
	"retried":     "flash.retried",
	"replayed":    "flash.replayed",
	"started":     "flash.started",
	"paused":      "flash.paused",
	"resumed":     "flash.resumed",
	"cancelled":   "flash.cancelled",
	"requeued":    "flash.requeued",
}

func flashKey(name string) string { return flashes[name] }

// badQuery is an EINVALID error for the query parameter name.
func badQuery(name string, err error) error {
	return notify.Errorf(notify.EINVALID, "bad_query", "%s: %v", name, err)
}
