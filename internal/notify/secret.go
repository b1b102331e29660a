package notify

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
)

// SecretKeys are the biz_content fields that hold credentials. They are
// taken out of a notification before it is stored or logged.
var SecretKeys = []string{"app_auth_token", "app_refresh_token", "app_auth_code"}

// Redacted replaces a secret in stored biz_content.
const Redacted = "[redacted]"

// Redact takes the SecretKeys fields out of the JSON object biz, at any
// depth. It returns biz with each such string replaced by Redacted, and the
// values it took out. A biz that is not JSON, or holds no secret, comes back
// unchanged with nil secrets.
func Redact(biz string) (string, map[string]string) {
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

// Sealer encrypts secrets at rest with AES-GCM. The sealed form is
// nonce || ciphertext; the additional data binds a secret to its owner so
// that a sealed value copied to another row does not open.
type Sealer struct {
	aead cipher.AEAD
	key  []byte // the token key, kept only to derive other keys from
}

// NewSealer returns a Sealer for a 16, 24 or 32-byte key.
func NewSealer(key []byte) (*Sealer, error) {
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, fmt.Errorf("token key: %w", err)
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, err
	}
	return &Sealer{aead: aead, key: bytes.Clone(key)}, nil
}

// DeriveKey returns a 32-byte key for another purpose than sealing tokens,
// HMAC-SHA256(token key, purpose): the same on every replica that has the
// same TOKEN_ENCRYPTION_KEY, with nothing more to configure, and from which
// the token key cannot be recovered. Each purpose names itself and its
// version (for example "auth-state v1"), so that keys for different uses
// differ.
func (s *Sealer) DeriveKey(purpose string) []byte {
	m := hmac.New(sha256.New, s.key)
	m.Write([]byte(purpose))
	return m.Sum(nil)
}

// ParseKey decodes a key given as base64 (standard or URL, padded or not) or
// as hex, and checks it is 16, 24 or 32 bytes long.
func ParseKey(s string) ([]byte, error) {
	s = strings.TrimSpace(s)
	var key []byte
	var err error
	if len(s) == 64 || len(s) == 48 || len(s) == 32 {
		if key, err = hex.DecodeString(s); err == nil {
			return key, nil
		}
	}
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawStdEncoding, base64.URLEncoding, base64.RawURLEncoding} {
		if key, err = enc.DecodeString(s); err == nil {
			break
		}
	}
	if err != nil {
		return nil, errors.New("not base64 or hex")
	}
	switch len(key) {
	case 16, 24, 32:
		return key, nil
	}
	return nil, fmt.Errorf("decodes to %d bytes; want 16, 24 or 32", len(key))
}

// Seal encrypts plaintext bound to owner. An empty plaintext seals to nil.
func (s *Sealer) Seal(plaintext, owner string) ([]byte, error) {
	if plaintext == "" {
		return nil, nil
	}
	nonce := make([]byte, s.aead.NonceSize(), s.aead.NonceSize()+len(plaintext)+s.aead.Overhead())
	if _, err := rand.Read(nonce); err != nil {
		return nil, err
	}
	return s.aead.Seal(nonce, nonce, []byte(plaintext), []byte(owner)), nil
}

// Open decrypts what Seal returned for the same owner. A nil sealed value
// opens to "".
func (s *Sealer) Open(sealed []byte, owner string) (string, error) {
	if len(sealed) == 0 {
		return "", nil
	}
	n := s.aead.NonceSize()
	if len(sealed) < n {
		return "", errors.New("sealed value too short")
	}
	out, err := s.aead.Open(nil, sealed[:n], sealed[n:], []byte(owner))
	if err != nil {
		return "", errors.New("sealed value does not open with this key")
	}
	return string(out), nil
}
