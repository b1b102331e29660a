// Package redact takes merchants' credentials out of a notification's
// biz_content before it is stored or logged: the grant and cancellation
// messages carry app_auth_token, app_refresh_token and app_auth_code, which
// the gateway keeps only sealed (internal/seal) in the authorization row.
package redact

import (
	"bytes"
	"encoding/json"
	"strings"
)

// SecretKeys are the biz_content fields that hold credentials. They are
// taken out of a notification before it is stored or logged.
var SecretKeys = []string{"app_auth_token", "app_refresh_token", "app_auth_code"}

// Redacted replaces a secret in stored biz_content.
const Redacted = "[redacted]"

// Secrets takes the SecretKeys fields out of the JSON object biz, at any
// depth. It returns biz with each such string replaced by Redacted, and the
// values it took out. A biz that is not JSON, or holds no secret, comes back
// unchanged with nil secrets.
func Secrets(biz string) (string, map[string]string) {
	found := false
	for _, k := range SecretKeys {
		if strings.Contains(biz, k) {
			found = true
			break
		}
	}
	if !found {
		return biz, nil
	}
	dec := json.NewDecoder(strings.NewReader(biz))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return biz, nil
	}
	secrets := map[string]string{}
	redact(v, secrets)
	if len(secrets) == 0 {
		return biz, nil
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return biz, nil
	}
	return strings.TrimSuffix(buf.String(), "\n"), secrets
}

func redact(v any, secrets map[string]string) {
	switch t := v.(type) {
	case map[string]any:
		for k, child := range t {
			if isSecretKey(k) {
				if s, ok := child.(string); ok {
					secrets[k] = s
					t[k] = Redacted
				}
				continue
			}
			redact(child, secrets)
		}
	case []any:
		for _, child := range t {
			redact(child, secrets)
		}
	}
}

func isSecretKey(k string) bool {
	for _, s := range SecretKeys {
		if k == s {
			return true
		}
	}
	return false
}
