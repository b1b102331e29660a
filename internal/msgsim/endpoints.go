package msgsim

import (
	"context"
	"crypto"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/coder/websocket"

	"github.com/alipay-notify-gateway/gateway/internal/alipay"
	"github.com/alipay-notify-gateway/gateway/internal/msgchannel"
)

// checkSigned checks a register or connect request's parameters: each
// given once, the required ones present, sign_type RSA2, the timestamp
// fresh, and sign by the app's key over every other parameter (sign_type
// included) sorted and joined k=v&. It returns the app id.
func (s *Server) checkSigned(q url.Values, required ...string) (string, error) {
	f := alipay.Form{}
	for k, vs := range q {
		if len(vs) != 1 {
			return "", fmt.Errorf("parameter %s given %d times", k, len(vs))
		}
		f[k] = vs[0]
	}
	for _, k := range append([]string{"app_id", "charset", "sign_type", "timestamp", "sdk_version", "sign"}, required...) {
		if f[k] == "" {
			return "", fmt.Errorf("parameter %s is missing", k)
		}
	}
	appID := f["app_id"]
	pub, ok := s.cfg.Apps[appID]
	if !ok {
		return "", fmt.Errorf("unknown app %s", appID)
	}
	if f["sign_type"] != "RSA2" {
		return "", fmt.Errorf("sign_type %q is not RSA2", f["sign_type"])
	}
	ms, err := strconv.ParseInt(f["timestamp"], 10, 64)
	if err != nil {
		return "", errors.New("timestamp is not milliseconds")
	}
	if d := time.Since(time.UnixMilli(ms)); d > s.cfg.ClockSkew || d < -s.cfg.ClockSkew {
		return "", fmt.Errorf("timestamp is %v away from now", d.Round(time.Second))
	}
	sig, err := base64.StdEncoding.DecodeString(f["sign"])
	if err != nil {
		return "", errors.New("sign is not base64")
	}
	d := sha256.Sum256(alipay.SignContent(f, alipay.FormV2))
	if rsa.VerifyPKCS1v15(pub, crypto.SHA256, d[:], sig) != nil {
		return "", errors.New("sign does not verify with the app's public key")
	}
	return appID, nil
}

// javaContentType is what the official Java SDK sends as Content-Type at
// register and connect; a server may insist on it, so the simulator records
// a violation when a client leaves it out.
const javaContentType = "application/x-www-form-urlencoded;charset=UTF-8"

// handleRegister answers register.do: a link token and a zone cookie, or
// Alipay's error answer.
func (s *Server) handleRegister(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	if ct := r.Header.Get("Content-Type"); ct != javaContentType {
		s.violation("register with Content-Type %q, not the Java SDK's %q", ct, javaContentType)
	}
	appID, err := s.checkSigned(q, "nonce")
	if err != nil {
		s.log.Warn().Err(err).Msg("msgsim: registration refused")
		s.answer(w, `{"code":"40004","msg":"Business Failed","sub_code":"isv.invalid-signature","sub_msg":`+quote(err.Error())+`}`)
		return
	}
	s.mu.Lock()
	now := time.Now()
	for n, at := range s.nonces {
		if now.Sub(at) > 2*s.cfg.ClockSkew {
			delete(s.nonces, n)
		}
	}
	nonce := appID + "/" + q.Get("nonce")
	if _, seen := s.nonces[nonce]; seen {
		s.mu.Unlock()
		s.answer(w, `{"code":"40004","msg":"Business Failed","sub_code":"isv.repeated-nonce","sub_msg":"nonce already used"}`)
		return
	}
	s.nonces[nonce] = now
	if s.refuse[appID] > 0 {
		s.refuse[appID]--
		s.mu.Unlock()
		s.log.Info().Str("app_id", appID).Msg("msgsim: registration refused on command")
		s.answer(w, `{"code":"20000","msg":"Service Currently Unavailable","sub_code":"isp.unknow-error","sub_msg":"simulated refusal"}`)
		return
	}
	tok := randomHex(16)
	s.seq++
	zone := "Z" + strconv.Itoa(s.seq)
	s.tokens[tok] = token{app: appID, zone: zone, expires: now.Add(s.cfg.TokenTTL)}
	s.registrations[appID]++
	s.notifyLocked()
	s.mu.Unlock()
	http.SetCookie(w, &http.Cookie{Name: "zone", Value: zone, Path: "/"})
	s.answer(w, `{"code":"10000","msg":"Success","link_token":`+quote(tok)+`}`)
}

// answer writes {"response":RESPONSE,"sign":"..."}, sign over RESPONSE's
// exact text, with a space after the colon as Alipay's answers have it, to
// show that the signed text is the object's, not the line's.
func (s *Server) answer(w http.ResponseWriter, response string) {
	sig, err := s.sign([]byte(response))
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html;charset=UTF-8")
	_, _ = w.Write([]byte(`{"response": ` + response + `, "sign":"` + sig + `"}`))
}

// handleConnect upgrades a signed connect with a live link token of the
// same app and the zone cookie of its registration.
func (s *Server) handleConnect(w http.ResponseWriter, r *http.Request) {
	if ct := r.Header.Get("Content-Type"); ct != javaContentType {
		s.violation("connect with Content-Type %q, not the Java SDK's %q", ct, javaContentType)
	}
	appID, err := s.checkSigned(r.URL.Query(), "link_token")
	if err == nil {
		err = s.takeToken(appID, r.URL.Query().Get("link_token"), r)
	}
	if err != nil {
		s.log.Warn().Err(err).Msg("msgsim: connect refused")
		http.Error(w, err.Error(), http.StatusForbidden)
		return
	}
	c, err := websocket.Accept(w, r, &websocket.AcceptOptions{OnPingReceived: func(context.Context, []byte) bool {
		s.mu.Lock()
		defer s.mu.Unlock()
		return !s.mute[appID]
	}})
	if err != nil {
		s.log.Warn().Err(err).Msg("msgsim: upgrade failed")
		return
	}
	c.SetReadLimit(1 << 20)
	sc := &simConn{app: appID, c: c}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		_ = c.CloseNow()
		return
	}
	s.conns[appID] = append(s.conns[appID], sc)
	s.connects[appID]++
	s.wg.Add(1) // under s.mu, not closed: Close waits for it
	s.notifyLocked()
	s.mu.Unlock()
	s.log.Info().Str("app_id", appID).Msg("msgsim: app connected")
	s.wake()
	s.readAcks(sc)
}

// takeToken uses up a link token: it must be live, of appID, and come with
// its zone cookie.
func (s *Server) takeToken(appID, tok string, r *http.Request) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	t, ok := s.tokens[tok]
	delete(s.tokens, tok)
	switch {
	case !ok:
		return errors.New("unknown or used link_token")
	case t.app != appID:
		return errors.New("link_token of another app")
	case time.Now().After(t.expires):
		return errors.New("link_token expired")
	}
	ck, err := r.Cookie("zone")
	if err != nil || ck.Value != t.zone {
		return fmt.Errorf("zone cookie %q missing or not the registration's", r.Header.Get("Cookie"))
	}
	return nil
}

// readAcks reads the client's frames until the connection ends.
func (s *Server) readAcks(sc *simConn) {
	defer s.wg.Done()
	defer func() {
		s.mu.Lock()
		cs := s.conns[sc.app]
		for i, c := range cs {
			if c == sc {
				s.conns[sc.app] = append(cs[:i:i], cs[i+1:]...)
				break
			}
		}
		s.notifyLocked()
		s.mu.Unlock()
		_ = sc.c.CloseNow()
		s.log.Info().Str("app_id", sc.app).Msg("msgsim: app disconnected")
	}()
	for {
		typ, b, err := sc.c.Read(context.Background())
		if err != nil {
			return
		}
		if typ != websocket.MessageText {
			s.violation("binary frame from app %s", sc.app)
			continue
		}
		f, err := msgchannel.ParseFrame(b)
		if err != nil {
			s.violation("unreadable frame from app %s: %v", sc.app, err)
			continue
		}
		if f.Cmd != msgchannel.CmdConsumeAck || f.Type != "message" {
			s.violation("frame from app %s with x-type %q x-cmd %q", sc.app, f.Type, f.Cmd)
			continue
		}
		s.onAck(sc.app, f)
	}
}
