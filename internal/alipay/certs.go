package alipay

import (
	"crypto/md5"
	"crypto/rsa"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/smartwalle/ncrypto"
)

// CertSN returns a certificate's SN as Alipay computes it: the hex MD5 of the
// issuer DN in RFC 2253 form (most specific first, as Java's
// X500Principal.getName writes it) followed by the serial number in decimal.
func CertSN(c *x509.Certificate) string {
	sum := md5.Sum([]byte(c.Issuer.String() + c.SerialNumber.String()))
	return hex.EncodeToString(sum[:])
}

// RootBundle is Alipay's root certificate file (alipayRootCert.crt): several
// roots, some of them not RSA.
type RootBundle struct {
	Certs []*x509.Certificate
	// SN is the root SN Alipay expects in outbound calls: the SNs of the
	// RSA-signed roots joined by "_".
	SN string
	// Skipped counts the blocks Go cannot parse (an SM2 root).
	Skipped int
}

// ParseRootBundle parses a root bundle.
func ParseRootBundle(data []byte) (*RootBundle, error) {
	certs, skipped, err := parseCerts(data)
	if err != nil {
		return nil, fmt.Errorf("root bundle: %w", err)
	}
	var sns []string
	for _, c := range certs {
		if rsaSigned(c) {
			sns = append(sns, CertSN(c))
		}
	}
	return &RootBundle{Certs: certs, SN: strings.Join(sns, "_"), Skipped: skipped}, nil
}

func rsaSigned(c *x509.Certificate) bool {
	switch c.SignatureAlgorithm {
	case x509.MD2WithRSA, x509.MD5WithRSA, x509.SHA1WithRSA, x509.SHA256WithRSA,
		x509.SHA384WithRSA, x509.SHA512WithRSA,
		x509.SHA256WithRSAPSS, x509.SHA384WithRSAPSS, x509.SHA512WithRSAPSS:
		return true
	}
	return false
}

// ParseCert parses the first certificate of a PEM file (or bare base64 DER).
func ParseCert(data []byte) (*x509.Certificate, error) {
	certs, _, err := parseCerts(data)
	if err != nil {
		return ncrypto.DecodeCertificate(data)
	}
	return certs[0], nil
}

// AlipayCert is an Alipay signing certificate that chains to the root bundle.
type AlipayCert struct {
	Cert *x509.Certificate
	SN   string
	Key  *rsa.PublicKey
}

// ErrChain wraps every reason a certificate is refused at load.
var ErrChain = errors.New("certificate does not chain to the Alipay root")

// ParseAlipayCert parses an Alipay public cert file (the signing cert,
// possibly followed by its intermediates) and checks, at time now, that the
// first cert chains to roots through the file's other certs and is within
// its validity. It returns an error wrapping ErrChain when it does not, or
// when it has expired or is not yet valid.
func ParseAlipayCert(data []byte, roots *RootBundle, now time.Time) (*AlipayCert, error) {
	certs, _, err := parseCerts(data)
	if err != nil {
		return nil, err
	}
	leaf := certs[0]
	key, ok := leaf.PublicKey.(*rsa.PublicKey)
	if !ok {
		return nil, fmt.Errorf("the certificate's key is %T, not RSA", leaf.PublicKey)
	}
	if now.Before(leaf.NotBefore) {
		return nil, fmt.Errorf("%w: not valid before %s", ErrChain, leaf.NotBefore.UTC().Format(time.RFC3339))
	}
	if now.After(leaf.NotAfter) {
		return nil, fmt.Errorf("%w: expired on %s", ErrChain, leaf.NotAfter.UTC().Format(time.RFC3339))
	}
	if err := verifyChain(leaf, certs[1:], roots, now); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrChain, err)
	}
	return &AlipayCert{Cert: leaf, SN: CertSN(leaf), Key: key}, nil
}

// verifyChain checks that leaf chains to one of roots' certificates through
// intermediates, every certificate valid at now.
func verifyChain(leaf *x509.Certificate, intermediates []*x509.Certificate, roots *RootBundle, now time.Time) error {
	rootPool := x509.NewCertPool()
	for _, c := range roots.Certs {
		rootPool.AddCert(c)
	}
	interPool := x509.NewCertPool()
	for _, c := range intermediates {
		interPool.AddCert(c)
	}
	_, err := leaf.Verify(x509.VerifyOptions{
		Roots:         rootPool,
		Intermediates: interPool,
		CurrentTime:   now,
		KeyUsages:     []x509.ExtKeyUsage{x509.ExtKeyUsageAny},
	})
	return err
}
