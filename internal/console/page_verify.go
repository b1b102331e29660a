package console

import (
	"bytes"
	"net/http"
	"net/url"
	"sort"

	"github.com/go-chi/chi/v5"

	"github.com/alipay-notify-gateway/gateway/internal/diagnose"
	"github.com/alipay-notify-gateway/gateway/internal/httpapi"
	"github.com/alipay-notify-gateway/gateway/internal/notify"
)

func (c *Console) verifyRoutes(r chi.Router) {
	r.Get("/", c.verifyForm)
	r.Post("/", c.verify)
}

type verifyData struct {
	Apps   []string // the configured apps
	App    string   // the app chosen, "" to take the body's
	Body   string
	Ran    bool
	UsedAs string // the app whose keys the diagnosis used
	Note   string // a message key: why that app
	// The gateway's own answer to the body, as POST /alipay/notify would
	// give it.
	Answer int
	Reason string
	Report diagnose.Report
}

func (c *Console) apps() []string {
	ids := make([]string, 0, len(c.cfg.Keys))
	for id := range c.cfg.Keys {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	return ids
}

func (c *Console) verifyForm(w http.ResponseWriter, r *http.Request) {
	c.render(w, r, "verify", "nav.verify", verifyData{Apps: c.apps()})
}

// verify diagnoses a pasted body as alipayctl verify does, with the keys
// of the app it names (or the one chosen), and gives the gateway's own
// verdict beside it. Nothing is stored.
func (c *Console) verify(w http.ResponseWriter, r *http.Request) {
	d := verifyData{Apps: c.apps(), App: r.PostFormValue("app"), Body: r.PostFormValue("body"), Ran: true}
	body := bytes.TrimRight([]byte(d.Body), "\r\n")
	if int64(len(body)) > c.cfg.MaxBodyBytes {
		c.fail(w, r, notify.Errorf(notify.ETOOLARGE, "body_too_large", "the body is over %d bytes (MAX_BODY_BYTES): the gateway answers 413", c.cfg.MaxBodyBytes))
		return
	}
	named := ""
	if q, err := url.ParseQuery(string(body)); err == nil {
		named = q.Get("app_id")
	}
	switch _, known := c.cfg.Keys[named]; {
	case d.App != "":
		if _, ok := c.cfg.Keys[d.App]; !ok {
			c.fail(w, r, notify.Errorf(notify.EINVALID, "unknown_app", "app %q is not configured", notify.Clip(d.App)))
			return
		}
		d.UsedAs = d.App
		if named != "" && named != d.App {
			d.Note = "verify.note.chosen"
		}
	case known:
		d.UsedAs = named
	case len(c.cfg.Keys) == 1:
		d.UsedAs = d.Apps[0]
		d.Note = "verify.note.only"
	}
	d.Answer, d.Reason = http.StatusOK, ""
	if c.cfg.Verifier != nil {
		if _, _, err := c.cfg.Verifier.Notification(body, notify.ChannelHTTP, c.now()); err != nil {
			d.Answer, d.Reason = httpapi.StatusOf(err), notify.ErrorReason(err)
		}
	}
	if d.UsedAs != "" {
		in := c.cfg.Keys[d.UsedAs]
		in.Now = c.now()
		d.Report = diagnose.Diagnose(body, in)
	} else {
		d.Note = "verify.note.unknown"
	}
	c.render(w, r, "verify", "nav.verify", d)
}
