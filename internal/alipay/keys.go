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
	"encoding/pem"
	"errors"
	"fmt"
	"strings"

	"github.com/smartwalle/ncrypto"
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

// ParsePrivateKey parses an RSA private key as PEM or bare base64, PKCS#1 or
// PKCS#8 (the Alipay key tool writes bare PKCS#8 for Java, PKCS#1 for others).
func ParsePrivateKey(data []byte) (*rsa.PrivateKey, error) {
	data = bytes.TrimSpace(data)
	if !bytes.HasPrefix(data, []byte("-----")) {
		data = removeSpace(data)
	}
	if k, err := ncrypto.DecodePrivateKey(data).PKCS1().RSAPrivateKey(); err == nil {
		return k, nil
	}
	k, err := ncrypto.DecodePrivateKey(data).PKCS8().RSAPrivateKey()
	if err != nil {
		return nil, fmt.Errorf("private key: not an RSA key in PKCS#1 or PKCS#8: %v", err)
	}
	return k, nil
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
