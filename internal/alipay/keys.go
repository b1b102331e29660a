// Package alipay verifies Alipay's signed notifications and holds what that
// needs: key and certificate loading (with smartwalle/ncrypto, the key codec
// of smartwalle/alipay), Alipay's certificate SNs, chain checks, the signed
// content as Alipay's official SDKs build it, and biz_content decoding
// (charsets and AES). It never downloads a certificate.
package alipay

import (
	"bytes"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"strings"

	"github.com/smartwalle/ncrypto"
)

// Errors of ParsePrivateKey.
var (
	// ErrInvalidPrivateKey is returned (wrapped) by ParsePrivateKey when the
	// input is not a private key in any supported encoding.
	ErrInvalidPrivateKey = errors.New("alipay: invalid private key")
	// ErrNotRSAKey is returned (wrapped) by ParsePrivateKey when the input is
	// a well-formed private key of another algorithm (EC, Ed25519, ...).
	ErrNotRSAKey = errors.New("alipay: private key is not an RSA key")
)

// ParsePublicKey parses an Alipay public key as the console shows it (bare
// base64 of a SubjectPublicKeyInfo, line breaks allowed) or as PEM. It
// returns a descriptive error for the usual mistakes: a private key, a
// certificate, or a key that is not RSA.
func ParsePublicKey(data []byte) (*rsa.PublicKey, error) {
	data = bytes.TrimSpace(data)
	if len(data) == 0 {
		return nil, errors.New("empty public key")
	}
	if bytes.HasPrefix(data, []byte("-----")) {
		block, _ := pem.Decode(data)
		if block == nil {
			return nil, errors.New("public key: PEM does not decode")
		}
		switch block.Type {
		case "PUBLIC KEY":
		case "RSA PUBLIC KEY":
			return ncrypto.DecodePublicKey(pem.EncodeToMemory(block)).PKCS1().RSAPublicKey()
		case "CERTIFICATE":
			return nil, errors.New("public key: this is a certificate; use certificate mode (ALIPAY_PUBLIC_CERT_FILE)")
		default:
			if strings.Contains(block.Type, "PRIVATE") {
				return nil, errors.New("public key: this is a private key; paste the Alipay public key (支付宝公钥) instead")
			}
			return nil, fmt.Errorf("public key: unexpected PEM block %q", block.Type)
		}
		return pkix(pem.EncodeToMemory(block))
	}
	return pkix(removeSpace(data))
}

func pkix(data []byte) (*rsa.PublicKey, error) {
	key, err := ncrypto.DecodePublicKey(data).PKIX().PublicKey()
	if err != nil {
		if isPrivateKey(data) {
			return nil, errors.New("public key: this is a private key; paste the Alipay public key (支付宝公钥) instead")
		}
		return nil, fmt.Errorf("public key: %v", err)
	}
	pub, ok := key.(*rsa.PublicKey)
	if !ok {
		return nil, fmt.Errorf("public key: %T is not an RSA key", key)
	}
	return pub, nil
}

// isPrivateKey reports whether data decodes as an RSA private key (PKCS#1 or
// PKCS#8), a common mix-up.
func isPrivateKey(data []byte) bool {
	if _, err := ncrypto.DecodePrivateKey(data).PKCS1().RSAPrivateKey(); err == nil {
		return true
	}
	_, err := ncrypto.DecodePrivateKey(data).PKCS8().RSAPrivateKey()
	return err == nil
}

// removeSpace drops every ASCII white space byte (line breaks in a pasted key).
func removeSpace(b []byte) []byte {
	return bytes.Map(func(r rune) rune {
		switch r {
		case ' ', '\t', '\r', '\n':
			return -1
		}
		return r
	}, b)
}

// ParsePrivateKey parses an RSA private key in the forms keys come in:
//
//   - a PEM "RSA PRIVATE KEY" (PKCS#1) or "PRIVATE KEY" (PKCS#8) block; text
//     before the block, other non-key blocks (such as certificates or
//     "EC PARAMETERS"), indentation and CRLF line endings are tolerated, and
//     the first block whose type ends in "PRIVATE KEY" is used;
//   - bare base64 (padded or not) of PKCS#1 or PKCS#8 DER, possibly wrapped
//     over several lines.
//
// Encrypted keys are rejected. Errors wrap ErrInvalidPrivateKey, or
// ErrNotRSAKey when the input holds a valid key of another algorithm.
func ParsePrivateKey(data []byte) (*rsa.PrivateKey, error) {
	if len(bytes.TrimSpace(data)) == 0 {
		return nil, fmt.Errorf("%w: empty input", ErrInvalidPrivateKey)
	}
	if bytes.Contains(data, []byte("-----BEGIN")) {
		return parsePEMPrivateKey(data)
	}
	der, err := decodeBase64(data)
	if err != nil {
		return nil, fmt.Errorf("%w: neither PEM nor base64: %w", ErrInvalidPrivateKey, err)
	}
	return parseDERPrivateKey(der)
}

// parsePEMPrivateKey parses the first private key PEM block in data.
func parsePEMPrivateKey(data []byte) (*rsa.PrivateKey, error) {
	// pem.Decode needs the armour lines to start at column 0; normalise
	// indentation (keys pasted into YAML, heredocs) and CRLF first.
	lines := strings.Split(string(data), "\n")
	for i, l := range lines {
		lines[i] = strings.TrimSpace(l)
	}
	rest := []byte(strings.Join(lines, "\n"))
	for {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			return nil, fmt.Errorf("%w: no PEM private key block found", ErrInvalidPrivateKey)
		}
		if !strings.HasSuffix(block.Type, "PRIVATE KEY") {
			continue
		}
		// PKCS#8 encryption, or the legacy RFC 1423 kind (Proc-Type: 4,ENCRYPTED).
		if block.Type == "ENCRYPTED PRIVATE KEY" || strings.Contains(block.Headers["Proc-Type"], "ENCRYPTED") {
			return nil, fmt.Errorf("%w: encrypted private keys are not supported", ErrInvalidPrivateKey)
		}
		return parseDERPrivateKey(block.Bytes)
	}
}

// decodeBase64 decodes standard base64, padded or not, ignoring all
// whitespace.
func decodeBase64(data []byte) ([]byte, error) {
	s := strings.Join(strings.Fields(string(data)), "")
	der, err := base64.StdEncoding.DecodeString(s)
	if err == nil {
		return der, nil
	}
	if der, rawErr := base64.RawStdEncoding.DecodeString(s); rawErr == nil {
		return der, nil
	}
	return nil, err
}

// parseDERPrivateKey parses PKCS#1 or PKCS#8 DER holding an RSA key.
func parseDERPrivateKey(der []byte) (*rsa.PrivateKey, error) {
	if k, err := x509.ParsePKCS1PrivateKey(der); err == nil {
		return k, nil
	}
	if key, err := x509.ParsePKCS8PrivateKey(der); err == nil {
		k, ok := key.(*rsa.PrivateKey)
		if !ok {
			return nil, fmt.Errorf("%w: PKCS#8 key is %T", ErrNotRSAKey, key)
		}
		return k, nil
	}
	if _, err := x509.ParseECPrivateKey(der); err == nil {
		return nil, fmt.Errorf("%w: SEC 1 EC private key", ErrNotRSAKey)
	}
	return nil, fmt.Errorf("%w: not a PKCS#1 or PKCS#8 private key", ErrInvalidPrivateKey)
}

// ParseLeafCert returns the first certificate of a PEM file, as the
// gateway reads an Alipay cert file (the signing cert, ahead of its
// intermediates), without checking its chain or validity: for reporting
// on a cert the gateway may refuse. Blocks of other types, and
// certificates Go cannot parse, are skipped; a file of bare base64 DER
// (a cert pasted as the console shows a key) is read too. It returns an
// error ("no certificate found") when there is no certificate.
func ParseLeafCert(data []byte) (*x509.Certificate, error) {
	certs, _, err := parseCerts(data)
	if err == nil {
		return certs[0], nil
	}
	// Bare base64 DER, line breaks allowed: a cert pasted as the console
	// shows a key.
	der, derr := base64.StdEncoding.DecodeString(string(removeSpace(bytes.TrimSpace(data))))
	if derr != nil {
		return nil, err
	}
	c, cerr := x509.ParseCertificate(der)
	if cerr != nil {
		return nil, err
	}
	return c, nil
}

// parseCerts parses every CERTIFICATE block of a PEM file. A block that Go
// cannot parse (Alipay's root bundle holds an SM2 root) is counted in
// skipped, not returned as an error.
func parseCerts(data []byte) (certs []*x509.Certificate, skipped int, err error) {
	rest := data
	for {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			break
		}
		if block.Type != "CERTIFICATE" {
			continue
		}
		c, perr := x509.ParseCertificate(block.Bytes)
		if perr != nil {
			skipped++
			continue
		}
		certs = append(certs, c)
	}
	if len(certs) == 0 {
		return nil, skipped, errors.New("no certificate found")
	}
	return certs, skipped, nil
}
