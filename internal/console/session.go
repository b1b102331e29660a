package console

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
	"time"

	"github.com/alipay-notify-gateway/gateway/internal/notify"
	"github.com/alipay-notify-gateway/gateway/internal/view"
)

// The cookies: the session's, the sign-in form's CSRF token, the language.
const (
	sessionCookie = "gw_console"
	loginCookie   = "gw_console_login"
	langCookie    = "gw_console_lang"
)

// csrfField is the form field of the CSRF token.
const csrfField = "csrf"

type ctxKey int

const (
	sessionKey ctxKey = iota
	langKey
)

// session is a signed-in request's session.
type session struct {
	idHash []byte
	*view.ConsoleSession
}

func sessionOf(ctx context.Context) *session {
	s, _ := ctx.Value(sessionKey).(*session)
	return s
}

func hash(s string) []byte {
	h := sha256.Sum256([]byte(s))
	return h[:]
}

// randomToken returns 32 random bytes, base64url.
func randomToken() string {
	b := make([]byte, 32)
	_, _ = rand.Read(b) // never fails (crypto/rand)
	return base64.RawURLEncoding.EncodeToString(b)
}

// overTLS reports whether r came over TLS: to this process, or to a
// trusted proxy that says so.
func (c *Console) overTLS(r *http.Request) bool {
	if r.TLS != nil {
		return true
	}
	if len(c.cfg.TrustedProxies) == 0 || !strings.EqualFold(r.Header.Get("X-Forwarded-Proto"), "https") {
		return false
	}
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return false
	}
	ip, err := netip.ParseAddr(host)
	if err != nil {
		return false
	}
	ip = ip.Unmap()
	for _, p := range c.cfg.TrustedProxies {
		if p.Contains(ip) {
			return true
		}
	}
	return false
}

// setCookie sets a console cookie: HttpOnly, SameSite=Strict, Secure over
// TLS; maxAge < 0 deletes it.
func (c *Console) setCookie(w http.ResponseWriter, r *http.Request, name, value, path string, maxAge time.Duration) {
	ck := &http.Cookie{Name: name, Value: value, Path: path, HttpOnly: true, SameSite: http.SameSiteStrictMode,
		Secure: c.overTLS(r), MaxAge: int(maxAge / time.Second)}
	if maxAge < 0 {
		ck.MaxAge = -1
	}
	http.SetCookie(w, ck)
}

// tokenConfigured reports whether tokenHash is the hash of a configured
// ops token, in constant time.
func (c *Console) tokenConfigured(tokenHash []byte) bool {
	ok := 0
	for _, h := range c.tokenHashes {
		ok |= subtle.ConstantTimeCompare(h, tokenHash)
	}
	return ok == 1
}

// requireSession admits a request with a live session: a GET without one
// goes to the sign-in page, anything else is refused with 401.
func (c *Console) requireSession(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s, err := c.lookup(r)
		if err != nil && notify.ErrorCode(err) != notify.ENOTFOUND {
			c.fail(w, r, err)
			return
		}
		if s == nil {
			if r.Method == http.MethodGet || r.Method == http.MethodHead {
				http.Redirect(w, r, Base+"/login?next="+url.QueryEscape(r.URL.RequestURI()), http.StatusSeeOther)
				return
			}
			c.fail(w, r, notify.Errorf(notify.EUNAUTHORIZED, "no_session", "not signed in"))
			return
		}
		next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), sessionKey, s)))
	})
}

// lookup returns the request's session, nil when it has none that is
// live: none, signed out, expired, or opened with a token no longer
// configured.
func (c *Console) lookup(r *http.Request) (*session, error) {
	ck, err := r.Cookie(sessionCookie)
	if err != nil || ck.Value == "" || len(ck.Value) > 128 {
		return nil, nil
	}
	idHash := hash(ck.Value)
	s, err := c.cfg.Store.ConsoleSession(r.Context(), idHash)
	if err != nil {
		return nil, err
	}
	if !c.tokenConfigured(s.TokenHash) {
		return nil, nil
	}
	return &session{idHash: idHash, ConsoleSession: s}, nil
}

// checkCSRF refuses, with 403, a request other than GET or HEAD whose
// form does not carry its session's CSRF token.
func (c *Console) checkCSRF(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodGet || r.Method == http.MethodHead {
			next.ServeHTTP(w, r)
			return
		}
		r.Body = http.MaxBytesReader(w, r.Body, c.cfg.MaxBodyBytes+16<<10)
		if err := r.ParseForm(); err != nil {
			var tooLarge *http.MaxBytesError
			if errors.As(err, &tooLarge) {
				c.fail(w, r, notify.Errorf(notify.ETOOLARGE, "form_too_large", "the form is over %d bytes", tooLarge.Limit))
			} else {
				c.fail(w, r, notify.Errorf(notify.EINVALID, "bad_form", "the form does not parse"))
			}
			return
		}
		given := r.PostFormValue(csrfField)
		s := sessionOf(r.Context())
		if given == "" || subtle.ConstantTimeCompare([]byte(given), []byte(s.CSRFToken)) != 1 {
			c.log.Warn().Str("path", r.URL.Path).Msg("console: form refused: missing or wrong CSRF token")
			c.fail(w, r, notify.Errorf(notify.EFORBIDDEN, "bad_csrf", "missing or wrong CSRF token"))
			return
		}
		next.ServeHTTP(w, r)
	})
}

// localPath returns next when it is a path of the console (no scheme, no
// host, no dot segments: never a redirect off the console), else the
// overview.
func localPath(next string) string {
	home := Base + "/"
	u, err := url.Parse(next)
	if err != nil || next == "" || u.Scheme != "" || u.Host != "" || u.User != nil || strings.HasPrefix(next, "//") ||
		strings.ContainsAny(next, "\\\r\n") || strings.Contains(u.Path, "/.") {
		return home
	}
	if u.Path != Base && !strings.HasPrefix(u.Path, home) {
		return home
	}
	return next
}

type loginData struct {
	Next  string
	Token string // the form's CSRF token
	Error string // a message key
	Out   bool   // just signed out
}

func (c *Console) loginForm(w http.ResponseWriter, r *http.Request) {
	if s, _ := c.lookup(r); s != nil {
		http.Redirect(w, r, localPath(r.URL.Query().Get("next")), http.StatusSeeOther)
		return
	}
	c.showLogin(w, r, http.StatusOK, "", r.URL.Query().Get("out") == "1")
}

func (c *Console) showLogin(w http.ResponseWriter, r *http.Request, status int, errKey string, out bool) {
	tok := randomToken()
	c.setCookie(w, r, loginCookie, tok, Base+"/login", time.Hour)
	next := r.URL.Query().Get("next")
	if r.Method == http.MethodPost {
		next = r.PostFormValue("next")
	}
	c.renderStatus(w, r, status, "login", "login.title", loginData{Next: localPath(next), Token: tok, Error: errKey, Out: out})
}

// login checks the sign-in form (its own CSRF token, then the ops token)
// and opens a session.
func (c *Console) login(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, 16<<10)
	ck, err := r.Cookie(loginCookie)
	given := r.PostFormValue(csrfField)
	if err != nil || given == "" || subtle.ConstantTimeCompare([]byte(ck.Value), []byte(given)) != 1 {
		c.log.Warn().Msg("console: sign-in refused: missing or wrong form token")
		c.showLogin(w, r, http.StatusForbidden, "login.expired", false)
		return
	}
	token := strings.TrimSpace(r.PostFormValue("token"))
	tokenHash := hash(token)
	if token == "" || !c.tokenConfigured(tokenHash) {
		c.log.Warn().Str("client", r.RemoteAddr).Msg("console: sign-in refused: wrong token")
		c.showLogin(w, r, http.StatusUnauthorized, "login.wrong", false)
		return
	}
	id := randomToken()
	if err := c.cfg.Store.CreateConsoleSession(r.Context(), hash(id), tokenHash, randomToken(), c.now().Add(c.cfg.SessionTTL)); err != nil {
		c.fail(w, r, err)
		return
	}
	c.setCookie(w, r, loginCookie, "", Base+"/login", -1)
	c.setCookie(w, r, sessionCookie, id, Base, c.cfg.SessionTTL)
	c.log.Info().Str("client", r.RemoteAddr).Msg("console: signed in")
	http.Redirect(w, r, localPath(r.PostFormValue("next")), http.StatusSeeOther)
}

// logout ends the session everywhere.
func (c *Console) logout(w http.ResponseWriter, r *http.Request) {
	if err := c.cfg.Store.DeleteConsoleSession(r.Context(), sessionOf(r.Context()).idHash); err != nil {
		c.fail(w, r, err)
		return
	}
	c.setCookie(w, r, sessionCookie, "", Base, -1)
	c.log.Info().Str("client", r.RemoteAddr).Msg("console: signed out")
	http.Redirect(w, r, Base+"/login?out=1", http.StatusSeeOther)
}
