package msgchannel

import (
	"bytes"
	"crypto"
	"crypto/rsa"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/alipay-notify-gateway/gateway/internal/alipay"
	"github.com/alipay-notify-gateway/gateway/internal/jsonspan"
)

// RegisterAnswer checks the answer of the channel's register.do for appID:
// a JSON object {"response":{...},"sign":"..."} whose sign signs the exact
// text of response with an Alipay key of the app (v.VerifyText). It returns
// the link_token of a successful answer (code 10000 or 100000000). A
// failure answer is an error naming its code and message, signed or not; a
// success answer that is unsigned or does not verify is an error too.
func RegisterAnswer(v *alipay.Verifier, appID string, body []byte) (string, error) {
	body = bytes.TrimSpace(body)
	if !json.Valid(body) {
		return "", errors.New("register answer is not JSON")
	}
	top, err := jsonspan.Members(body)
	if err != nil {
		return "", fmt.Errorf("register answer: %v", err)
	}
	raw, ok := top["response"]
	if !ok || raw[0] != '{' {
		return "", errors.New("register answer has no response object")
	}
	var resp struct {
		Code      string `json:"code"`
		Msg       string `json:"msg"`
		SubCode   string `json:"sub_code"`
		SubMsg    string `json:"sub_msg"`
		LinkToken string `json:"link_token"`
	}
	if err := json.Unmarshal(raw, &resp); err != nil {
		return "", fmt.Errorf("register answer: response: %v", err)
	}
	if resp.Code != "10000" && resp.Code != "100000000" {
		return "", fmt.Errorf("register refused: code %s %s %s %s", resp.Code, resp.Msg, resp.SubCode, resp.SubMsg)
	}
	var sign string
	if s, ok := top["sign"]; ok {
		_ = json.Unmarshal(s, &sign)
	}
	if err := v.VerifyText(appID, raw, sign); err != nil {
		return "", fmt.Errorf("register answer: %w", err)
	}
	if resp.LinkToken == "" {
		return "", errors.New("register answer has no link_token")
	}
	return resp.LinkToken, nil
}

// SignParams returns the query parameters of a register.do or websocket
// request signed as the Java SDK signs them: every parameter but sign,
// sign_type included, sorted by key and joined k=v with &, SHA256withRSA
// (RSA2) with the app's private key. It returns an error when key is nil.
func SignParams(params map[string]string, key *rsa.PrivateKey) (map[string]string, error) {
	if key == nil {
		return nil, errors.New("no app private key")
	}
	f := make(alipay.Form, len(params)+1)
	for k, val := range params {
		f[k] = val
	}
	f[alipay.ParamSignType] = "RSA2"
	return alipay.Sign(f, key, alipay.FormV2, crypto.SHA256)
}
