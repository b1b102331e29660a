// Package seal encrypts merchants' tokens at rest (AES-GCM), under a key
// ring: TOKEN_ENCRYPTION_KEY seals, the keys of TOKEN_ENCRYPTION_OLD_KEYS
// only open, and every sealed value names the key that sealed it, so that
// the key can be rotated (gateway reseal). It also derives, from the same
// key, keys for other purposes every replica shares (the authorization
// link's state).
package seal

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
)

// Sealer encrypts secrets at rest with AES-GCM under a key ring: the
// current key seals; the current and the old keys open, so that the key can
// be rotated (TOKEN_ENCRYPTION_KEY, TOKEN_ENCRYPTION_OLD_KEYS). The sealed
// form names its key:
//
//	0x01 | key id (4 bytes) | nonce (12 bytes) | ciphertext and tag
//
// where the key id is the first 4 bytes of SHA-256 over keyIDLabel and the
// key. The additional data is the 5-byte header (version and key id)
// followed by the owner: it binds a secret to its owner, so that a sealed
// value copied to another row does not open, and to its header. Values
// sealed before key ids (nonce | ciphertext, with the owner alone as
// additional data) still open. Trying a key that is not the right one is
// safe: GCM authenticates, so the wrong key or form fails to open rather
// than opening to something else.
type Sealer struct {
	keys []sealKey // keys[0] is the current key
}

// sealKey is one key of the ring.
type sealKey struct {
	id   [keyIDSize]byte
	aead cipher.AEAD
	key  []byte // the token key, kept only to derive other keys from
}

// The sealed form's header.
const (
	sealVersion = 0x01
	keyIDSize   = 4
	headerSize  = 1 + keyIDSize
	keyIDLabel  = "alipay-notify-gateway token key id\x00"
)

// New returns a Sealer that seals with current and opens with
// current and old, each a 16, 24 or 32-byte AES key. It returns an error
// when a key has another length, or when an old key repeats the current
// key or another old key.
func New(current []byte, old ...[]byte) (*Sealer, error) {
	all := append([][]byte{current}, old...)
	s := &Sealer{}
	for i, key := range all {
		name := "token key"
		if i > 0 {
			name = fmt.Sprintf("old key %d", i)
		}
		for j := 0; j < i; j++ {
			if bytes.Equal(key, all[j]) {
				if j == 0 {
					return nil, fmt.Errorf("%s is the current key", name)
				}
				return nil, fmt.Errorf("%s repeats old key %d", name, j)
			}
		}
		block, err := aes.NewCipher(key)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", name, err)
		}
		aead, err := cipher.NewGCM(block)
		if err != nil {
			return nil, err
		}
		sum := sha256.Sum256(append([]byte(keyIDLabel), key...))
		s.keys = append(s.keys, sealKey{id: [keyIDSize]byte(sum[:keyIDSize]), aead: aead, key: bytes.Clone(key)})
	}
	return s, nil
}

// DeriveKey returns a 32-byte key for another purpose than sealing tokens,
// HMAC-SHA256(current token key, purpose): the same on every replica that
// has the same TOKEN_ENCRYPTION_KEY, with nothing more to configure, and
// from which the token key cannot be recovered. Each purpose names itself
// and its version (for example "auth-state v1"), so that keys for
// different uses differ.
func (s *Sealer) DeriveKey(purpose string) []byte { return s.DeriveKeys(purpose)[0] }

// DeriveKeys returns DeriveKey's key under each key of the ring, the
// current key's first: what was made with a key derived before a rotation
// (from a key now in TOKEN_ENCRYPTION_OLD_KEYS) can still be checked.
func (s *Sealer) DeriveKeys(purpose string) [][]byte {
	out := make([][]byte, len(s.keys))
	for i, k := range s.keys {
		m := hmac.New(sha256.New, k.key)
		m.Write([]byte(purpose))
		out[i] = m.Sum(nil)
	}
	return out
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

// Seal encrypts plaintext bound to owner, under the current key, in the
// key id form. An empty plaintext seals to nil.
func (s *Sealer) Seal(plaintext, owner string) ([]byte, error) {
	if plaintext == "" {
		return nil, nil
	}
	k := s.keys[0]
	n := k.aead.NonceSize()
	out := make([]byte, headerSize+n, headerSize+n+len(plaintext)+k.aead.Overhead())
	out[0] = sealVersion
	copy(out[1:headerSize], k.id[:])
	nonce := out[headerSize:]
	if _, err := rand.Read(nonce); err != nil {
		return nil, err
	}
	return k.aead.Seal(out, nonce, []byte(plaintext), additionalData(out[:headerSize], owner)), nil
}

// Open decrypts what Seal returned for the same owner, under any key of
// the ring, in the key id form or the legacy one. A nil sealed value opens
// to "". It returns an error when no key opens it.
func (s *Sealer) Open(sealed []byte, owner string) (string, error) {
	plaintext, _, err := s.open(sealed, owner)
	return plaintext, err
}

// IsCurrent reports whether sealed opens for owner under the current key,
// in the key id form: whether it is already as Seal would seal it now, so
// that re-sealing it would change nothing. An empty value is current.
func (s *Sealer) IsCurrent(sealed []byte, owner string) bool {
	_, current, err := s.open(sealed, owner)
	return err == nil && current
}

// open decrypts sealed and reports whether it was in the key id form under
// the current key. It tries the keys whose id the header names, then (for
// a legacy value, or a header that does not hold) every key in the legacy
// form.
func (s *Sealer) open(sealed []byte, owner string) (string, bool, error) {
	if len(sealed) == 0 {
		return "", true, nil
	}
	if len(sealed) > headerSize && sealed[0] == sealVersion {
		ad := additionalData(sealed[:headerSize], owner)
		for i, k := range s.keys {
			if [keyIDSize]byte(sealed[1:headerSize]) != k.id {
				continue
			}
			if out, err := k.open(sealed[headerSize:], ad); err == nil {
				return out, i == 0, nil
			}
		}
	}
	for _, k := range s.keys {
		if out, err := k.open(sealed, []byte(owner)); err == nil {
			return out, false, nil
		}
	}
	return "", false, errors.New("sealed value does not open with any configured key")
}

// open decrypts nonce || ciphertext with additional data ad.
func (k sealKey) open(sealed, ad []byte) (string, error) {
	n := k.aead.NonceSize()
	if len(sealed) < n {
		return "", errors.New("sealed value too short")
	}
	out, err := k.aead.Open(nil, sealed[:n], sealed[n:], ad)
	if err != nil {
		return "", err
	}
	return string(out), nil
}

// additionalData is what a key id form value is bound to: its header, then
// its owner.
func additionalData(header []byte, owner string) []byte {
	return append(append(make([]byte, 0, len(header)+len(owner)), header...), owner...)
}
