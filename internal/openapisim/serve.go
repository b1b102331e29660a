package openapisim

import (
	"bytes"
	"crypto"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/url"
	"sort"
	"strings"
	"time"
)

// errorAnswer is an OpenAPI error: code and messages.
type errorAnswer struct {
	Code    string `json:"code"`
	Msg     string `json:"msg"`
	SubCode string `json:"sub_code,omitempty"`
	SubMsg  string `json:"sub_msg,omitempty"`
}

// Alipay's common error answers.
var (
	errMissing      = errorAnswer{Code: "40001", Msg: "Missing Required Arguments"}
	errInvalid      = errorAnswer{Code: "40002", Msg: "Invalid Arguments"}
	errBusiness     = errorAnswer{Code: "40004", Msg: "Business Failed"}
	errInvalidToken = errorAnswer{Code: "20001", Msg: "Insufficient Token Permissions", SubCode: "aop.invalid-app-auth-token", SubMsg: "无效的应用授权令牌"}
)

func (e errorAnswer) sub(code, msg string) errorAnswer {
	e.SubCode, e.SubMsg = code, msg
	return e
}

// serve checks a request as Alipay's gateway does, then answers it.
func (s *Sim) serve(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	s.requests++
	s.mu.Unlock()
	if r.Method != http.MethodPost {
		http.Error(w, "POST only", http.StatusMethodNotAllowed)
		return
	}
	if err := r.ParseForm(); err != nil {
		http.Error(w, "bad form", http.StatusBadRequest)
		return
	}
	p := r.PostForm
	method := p.Get("method")
	if e, ok := s.check(p); !ok {
		s.write(w, "error_response", e, Fault{Unsigned: true})
		return
	}
	var biz map[string]any
	if bc := p.Get("biz_content"); bc != "" {
		if err := json.Unmarshal([]byte(bc), &biz); err != nil {
			s.write(w, method, errInvalid.sub("isv.invalid-biz-content", "biz_content is not JSON"), Fault{})
			return
		}
	}
	f, admitted := s.admit(method, p, biz)
	if !admitted {
		s.write(w, method, errCallLimited, Fault{})
		return
	}
	var answer any
	if f.Deliver {
		answer = s.handle(p, biz, f)
	}

	if f.Delay > 0 {
		select {
		case <-time.After(f.Delay):
		case <-r.Context().Done():
			return
		case <-s.closing:
			return
		}
	}
	switch {
	case f.Hang:
		select {
		case <-r.Context().Done():
		case <-s.closing:
		}
		return
	case f.HTTPStatus != 0:
		w.Header().Set("Content-Type", "text/html")
		w.WriteHeader(f.HTTPStatus)
		_, _ = w.Write([]byte("<html><body>gateway error</body></html>"))
		return
	case f.Code != "":
		s.write(w, method, errorAnswer{Code: f.Code, Msg: f.Msg, SubCode: f.SubCode, SubMsg: f.SubMsg}, f)
		return
	}
	if answer == nil {
		answer = s.handle(p, biz, f)
	}
	s.write(w, method, answer, f)
}

// check verifies the common parameters, the signature, the cert SNs and
// the app_auth_token of a request.
func (s *Sim) check(p url.Values) (errorAnswer, bool) {
	for _, k := range []string{"app_id", "method", "format", "charset", "sign_type", "timestamp", "version", "sign"} {
		if p.Get(k) == "" {
			return errMissing.sub("isv.missing-"+strings.ReplaceAll(k, "_", "-"), k+" is missing"), false
		}
	}
	app, ok := s.apps[p.Get("app_id")]
	if !ok {
		return errInvalid.sub("isv.invalid-app-id", "unknown app_id"), false
	}
	switch {
	case !strings.EqualFold(p.Get("format"), "JSON"):
		return errInvalid.sub("isv.invalid-format", "format must be JSON"), false
	case !strings.EqualFold(p.Get("charset"), "utf-8"):
		return errInvalid.sub("isv.invalid-charset", "charset must be utf-8"), false
	case p.Get("sign_type") != "RSA2":
		return errInvalid.sub("isv.invalid-signature-type", "sign_type must be RSA2"), false
	case p.Get("version") != "1.0":
		return errInvalid.sub("isv.invalid-version", "version must be 1.0"), false
	}
	if _, err := time.Parse("2006-01-02 15:04:05", p.Get("timestamp")); err != nil {
		return errInvalid.sub("isv.invalid-timestamp", "timestamp must be yyyy-MM-dd HH:mm:ss"), false
	}
	if !verify(app.Pub, p) {
		return errInvalid.sub("isv.invalid-signature", "验签出错"), false
	}
	if app.AppCertSN != "" && p.Get("app_cert_sn") != app.AppCertSN {
		return errInvalid.sub("isv.app-cert-sn-mismatch", "app_cert_sn does not match the app's cert"), false
	}
	if app.RootCertSN != "" && p.Get("alipay_root_cert_sn") != app.RootCertSN {
		return errInvalid.sub("isv.alipay-root-cert-sn-mismatch", "alipay_root_cert_sn does not match"), false
	}
	return errorAnswer{}, true
}

// SignedContent is what the app signs: every parameter but sign, sorted by
// key, as key=value joined with &.
func SignedContent(p url.Values) string {
	keys := make([]string, 0, len(p))
	for k := range p {
		if k != "sign" {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	var b strings.Builder
	for i, k := range keys {
		if i > 0 {
			b.WriteByte('&')
		}
		b.WriteString(k + "=" + p.Get(k))
	}
	return b.String()
}

func verify(pub *rsa.PublicKey, p url.Values) bool {
	sig, err := base64.StdEncoding.DecodeString(p.Get("sign"))
	if err != nil || pub == nil {
		return false
	}
	sum := sha256.Sum256([]byte(SignedContent(p)))
	return rsa.VerifyPKCS1v15(pub, crypto.SHA256, sum[:], sig) == nil
}

// token resolves the request's app_auth_token: the grant it belongs to,
// whether one was given, and whether it is valid.
func (s *Sim) token(p url.Values) (grant, bool, bool) {
	t := p.Get("app_auth_token")
	if t == "" {
		return grant{}, false, true
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	g, ok := s.tokens[t]
	return g, true, ok && g.appID == p.Get("app_id")
}

// write answers v under method's response key, signed unless f says
// otherwise.
func (s *Sim) write(w http.ResponseWriter, method string, v any, f Fault) {
	var obj bytes.Buffer
	enc := json.NewEncoder(&obj)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(v)
	text := bytes.TrimRight(obj.Bytes(), "\n")
	key := strings.ReplaceAll(method, ".", "_") + "_response"
	if method == "error_response" {
		key = method
	}
	var out bytes.Buffer
	keyJSON, _ := json.Marshal(key)
	out.WriteString("{" + string(keyJSON) + ":")
	out.Write(text)
	if !f.Unsigned {
		signKey := s.cfg.SignKey
		if f.SignWith != nil {
			signKey = f.SignWith
		}
		if f.BadSign {
			signKey = otherKey()
		}
		sig := s.sign(signKey, text)
		sn := s.cfg.CertSN
		if f.CertSN != "" {
			sn = f.CertSN
		}
		if sn != "" {
			out.WriteString(`,"alipay_cert_sn":"` + sn + `"`)
		}
		out.WriteString(`,"sign":"` + base64.StdEncoding.EncodeToString(sig) + `"`)
	}
	out.WriteString("}")
	w.Header().Set("Content-Type", "application/json;charset=utf-8")
	_, _ = w.Write(out.Bytes())
}
