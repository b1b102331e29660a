package console

import (
	"context"
	"fmt"
	"net/http"
	"time"

	"github.com/go-chi/chi/v5"
	"golang.org/x/text/language"
)

// lang is a language of the console: an index into a message's texts.
type lang int

// The languages, Chinese first: what a browser that says nothing gets.
const (
	zh lang = iota
	en
)

// htmlLang is the lang attribute of a page.
func (l lang) htmlLang() string {
	if l == en {
		return "en"
	}
	return "zh-CN"
}

// fromAcceptLanguage picks from an Accept-Language header: the language
// of the most preferred tag that is Chinese (any script or region) or
// English; Chinese when none is.
func fromAcceptLanguage(header string) lang {
	tags, _, _ := language.ParseAcceptLanguage(header) // sorted by preference
	for _, t := range tags {
		switch base, _ := t.Base(); base.String() {
		case "zh":
			return zh
		case "en":
			return en
		}
	}
	return zh
}

// T returns the message key in l, formatted with args (fmt verbs); the key
// itself when the table has none (a test checks that none is missing).
func (l lang) T(key string, args ...any) string {
	m, ok := messages[key]
	if !ok {
		return key
	}
	if len(args) == 0 {
		return m[l]
	}
	return fmt.Sprintf(m[l], args...)
}

func langOf(ctx context.Context) lang {
	l, _ := ctx.Value(langKey).(lang)
	return l
}

// language chooses the request's language: the switch's cookie, else
// Accept-Language, else Chinese.
func (c *Console) language(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		l := zh
		if ck, err := r.Cookie(langCookie); err == nil && ck.Value == "en" {
			l = en
		} else if err != nil {
			l = fromAcceptLanguage(r.Header.Get("Accept-Language"))
		}
		w.Header().Add("Vary", "Accept-Language, Cookie")
		next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), langKey, l)))
	})
}

// switchLanguage keeps the chosen language in a cookie (a year) and goes
// back to the page it was chosen on.
func (c *Console) switchLanguage(w http.ResponseWriter, r *http.Request) {
	code := chi.URLParam(r, "lang")
	if code != "zh" && code != "en" {
		http.Error(w, "zh or en", http.StatusBadRequest)
		return
	}
	c.setCookie(w, r, langCookie, code, Base, 365*24*time.Hour)
	http.Redirect(w, r, localPath(r.URL.Query().Get("next")), http.StatusSeeOther)
}
