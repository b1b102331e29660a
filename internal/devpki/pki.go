package devpki

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"sync"
	"time"
)

// Subject name components used by NewPKI. They mimic the names in Alipay's
// real certificates, prefixed with "Test".
const (
	// RootCN is the common name of PKI.Root.
	RootCN = "Test Ant Financial Certification Authority R1"
	// ECRootCN is the common name of PKI.ECRoot.
	ECRootCN = "Test Ant Financial Certification Authority E1"
	// SHA1RootCN is the common name of PKI.SHA1Root.
	SHA1RootCN = "Test Ant Financial Certification Authority"
	// IntermediateCN is the common name of PKI.Intermediate (and, on
	// purpose, of the rogue intermediate).
	IntermediateCN = "Test Ant Financial Certification Authority Class 2 R1"
	// AlipayCN is the common name of PKI.Alipay, PKI.Rotated, PKI.Expired
	// and PKI.Rogue.
	AlipayCN = "Test Alipay Notification Signing"

	caOrganization       = "Test Ant Financial"
	caOrganizationalUnit = "Certification Authority"
	alipayOrganization   = "Test Alipay"
	leafOrganizational   = "Alipay"
	appOrganization      = "Test ISV Co. Ltd."
)

// Validity periods used by NewPKI.
const (
	caLifetime      = 20 * 365 * 24 * time.Hour
	caBackdate      = 24 * time.Hour
	leafLifetime    = 2 * 365 * 24 * time.Hour
	leafBackdate    = time.Hour
	expiredBackdate = 2 * 365 * 24 * time.Hour
	expiredEnded    = 24 * time.Hour
)

// Cert is a certificate together with its private key.
type Cert struct {
	// Cert is the parsed certificate.
	Cert *x509.Certificate
	// Key is the private key matching Cert's public key.
	Key *rsa.PrivateKey
	// PEM is the certificate file content: the leaf certificate PEM
	// followed by its issuing intermediate's PEM, as Alipay ships
	// alipayCertPublicKey_RSA2.crt.
	PEM []byte
}

// PKI is a certificate hierarchy shaped like Alipay's. See the package
// documentation for a diagram. All certificates are independent of any
// other PKI value: two calls to NewPKI share nothing.
type PKI struct {
	// AppID is the application ID the PKI was created for; WriteDir uses
	// it to name appCertPublicKey_<AppID>.crt.
	AppID string

	// Root is the RSA root (sha256WithRSA) that issues Intermediate.
	Root *x509.Certificate
	// RootKey is Root's private key.
	RootKey *rsa.PrivateKey
	// ECRoot is an ECDSA P-384 self-signed root (ecdsa-with-SHA384). Real
	// Alipay root bundles hold one; it must be skipped when computing the
	// root certificate SN.
	ECRoot *x509.Certificate
	// ECRootKey is ECRoot's private key.
	ECRootKey *ecdsa.PrivateKey
	// SHA1Root is a second RSA root signed with sha1WithRSA. Real Alipay
	// root bundles hold one; it counts in the root certificate SN.
	SHA1Root *x509.Certificate

	// Intermediate is the "Class 2" CA, issued by Root, that issues every
	// genuine leaf.
	Intermediate *x509.Certificate
	// IntermediateKey is Intermediate's private key.
	IntermediateKey *rsa.PrivateKey

	// Alipay is Alipay's notification signing certificate.
	Alipay Cert
	// Rotated is a second Alipay signing certificate with a new key and
	// serial, issued by the same Intermediate, for key rotation tests.
	Rotated Cert
	// Expired is an Alipay signing certificate issued by Intermediate whose
	// NotAfter is 24 hours in the past.
	Expired Cert
	// Rogue is an Alipay-looking signing certificate issued by a rogue
	// intermediate under a rogue self-signed root that is not in
	// RootBundlePEM. The rogue CAs copy the subject names of Intermediate
	// and Root; Rogue.PEM includes the rogue intermediate.
	Rogue Cert
	// App is the ISV application's own certificate
	// (appCertPublicKey_<appid>.crt), issued by Intermediate.
	App Cert

	// RootBundlePEM is the content of alipayRootCert.crt: the PEM of
	// ECRoot, Root and SHA1Root, in that order.
	RootBundlePEM []byte
}

// keyGen generates n RSA keys concurrently.
func keyGen(n int) ([]*rsa.PrivateKey, error) {
	keys := make([]*rsa.PrivateKey, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() { keys[i], errs[i] = NewKey() })
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return keys, nil
}

// validAppID reports whether id is usable in a file name: non-empty ASCII
// letters, digits, '-' and '_'.
func validAppID(id string) bool {
	if id == "" || len(id) > 64 {
		return false
	}
	for _, r := range id {
		switch {
		case r >= '0' && r <= '9', r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r == '-', r == '_':
		default:
			return false
		}
	}
	return true
}

// NewPKI generates a fresh PKI for the application appID (for example
// "2021000000000000"). appID must be 1 to 64 ASCII letters, digits, '-' or
// '_', since it becomes part of a file name.
//
// Roots and the intermediate are valid from one day ago for 20 years;
// leaves from one hour ago for 2 years, except Expired which was valid from
// 2 years ago until 24 hours ago. NewPKI generates its RSA keys concurrently.
func NewPKI(appID string) (*PKI, error) {
	if !validAppID(appID) {
		return nil, fmt.Errorf("devpki: invalid app ID %q: want 1-64 ASCII letters, digits, '-' or '_'", appID)
	}

	// Keys: root, intermediate, alipay, rotated, expired, app, rogue leaf,
	// rogue intermediate, and one shared by SHA1Root and the rogue root.
	const (
		kRoot = iota
		kIntermediate
		kAlipay
		kRotated
		kExpired
		kApp
		kRogue
		kRogueIntermediate
		kSHA1RootAndRogueRoot
		nKeys
	)
	keys, err := keyGen(nKeys)
	if err != nil {
		return nil, err
	}
	ecKey, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("devpki: generate ECDSA key: %w", err)
	}

	now := time.Now().UTC().Truncate(time.Second)
	caName := func(cn string) pkix.Name {
		return pkix.Name{
			Country:            []string{"CN"},
			Organization:       []string{caOrganization},
			OrganizationalUnit: []string{caOrganizationalUnit},
			CommonName:         cn,
		}
	}
	alipayName := pkix.Name{
		Country:            []string{"CN"},
		Organization:       []string{alipayOrganization},
		OrganizationalUnit: []string{leafOrganizational},
		CommonName:         AlipayCN,
	}
	appName := pkix.Name{
		Country:            []string{"CN"},
		Organization:       []string{appOrganization},
		OrganizationalUnit: []string{leafOrganizational},
		CommonName:         appID,
	}

	p := &PKI{AppID: appID, RootKey: keys[kRoot], ECRootKey: ecKey, IntermediateKey: keys[kIntermediate]}

	// Roots.
	if p.Root, err = selfSigned(caName(RootCN), keys[kRoot], x509.SHA256WithRSA, now); err != nil {
		return nil, err
	}
	if p.ECRoot, err = selfSigned(caName(ECRootCN), ecKey, x509.ECDSAWithSHA384, now); err != nil {
		return nil, err
	}
	if p.SHA1Root, err = selfSigned(caName(SHA1RootCN), keys[kSHA1RootAndRogueRoot], x509.SHA1WithRSA, now); err != nil {
		return nil, err
	}
	rogueRoot, err := selfSigned(caName(RootCN), keys[kSHA1RootAndRogueRoot], x509.SHA256WithRSA, now)
	if err != nil {
		return nil, err
	}

	// Intermediates.
	if p.Intermediate, err = intermediate(caName(IntermediateCN), keys[kIntermediate], p.Root, keys[kRoot], now); err != nil {
		return nil, err
	}
	rogueIntermediate, err := intermediate(caName(IntermediateCN), keys[kRogueIntermediate], rogueRoot, keys[kSHA1RootAndRogueRoot], now)
	if err != nil {
		return nil, err
	}

	// Leaves.
	leaves := []struct {
		dst       *Cert
		name      pkix.Name
		key       *rsa.PrivateKey
		parent    *x509.Certificate
		parentKey *rsa.PrivateKey
		notBefore time.Time
		notAfter  time.Time
	}{
		{&p.Alipay, alipayName, keys[kAlipay], p.Intermediate, keys[kIntermediate], now.Add(-leafBackdate), now.Add(leafLifetime)},
		{&p.Rotated, alipayName, keys[kRotated], p.Intermediate, keys[kIntermediate], now.Add(-leafBackdate), now.Add(leafLifetime)},
		{&p.Expired, alipayName, keys[kExpired], p.Intermediate, keys[kIntermediate], now.Add(-expiredBackdate), now.Add(-expiredEnded)},
		{&p.App, appName, keys[kApp], p.Intermediate, keys[kIntermediate], now.Add(-leafBackdate), now.Add(leafLifetime)},
		{&p.Rogue, alipayName, keys[kRogue], rogueIntermediate, keys[kRogueIntermediate], now.Add(-leafBackdate), now.Add(leafLifetime)},
	}
	for _, l := range leaves {
		tpl, err := template(l.name, l.notBefore, l.notAfter)
		if err != nil {
			return nil, err
		}
		tpl.KeyUsage = x509.KeyUsageDigitalSignature
		tpl.BasicConstraintsValid = true
		tpl.SignatureAlgorithm = x509.SHA256WithRSA
		c, err := create(tpl, l.parent, &l.key.PublicKey, l.parentKey)
		if err != nil {
			return nil, err
		}
		*l.dst = Cert{Cert: c, Key: l.key, PEM: append(certPEM(c), certPEM(l.parent)...)}
	}

	p.RootBundlePEM = append(append(certPEM(p.ECRoot), certPEM(p.Root)...), certPEM(p.SHA1Root)...)
	return p, nil
}

// MustNewPKI is like NewPKI but panics on error. It is meant for tests and
// package-level test fixtures only.
func MustNewPKI(appID string) *PKI {
	p, err := NewPKI(appID)
	if err != nil {
		panic(err)
	}
	return p
}

// MustNewKey is NewKey for package-level test fixtures: it panics on error.
func MustNewKey() *rsa.PrivateKey {
	k, err := NewKey()
	if err != nil {
		panic(err)
	}
	return k
}

// serialLimit is 2^128: serial numbers are random 128-bit positive integers.
var serialLimit = new(big.Int).Lsh(big.NewInt(1), 128)

// newSerial returns a random serial number of exactly 128 bits (the top bit
// is set so the number is positive, never zero, and of constant size).
func newSerial() (*big.Int, error) {
	n, err := rand.Int(rand.Reader, serialLimit)
	if err != nil {
		return nil, fmt.Errorf("devpki: generate serial number: %w", err)
	}
	return n.SetBit(n, 127, 1), nil
}

// template returns a certificate template with a fresh serial number.
func template(subject pkix.Name, notBefore, notAfter time.Time) (*x509.Certificate, error) {
	serial, err := newSerial()
	if err != nil {
		return nil, err
	}
	return &x509.Certificate{
		SerialNumber: serial,
		Subject:      subject,
		NotBefore:    notBefore,
		NotAfter:     notAfter,
	}, nil
}

// caTemplate returns a CA certificate template valid from one day before
// now for 20 years.
func caTemplate(subject pkix.Name, alg x509.SignatureAlgorithm, now time.Time) (*x509.Certificate, error) {
	tpl, err := template(subject, now.Add(-caBackdate), now.Add(caLifetime))
	if err != nil {
		return nil, err
	}
	tpl.BasicConstraintsValid = true
	tpl.IsCA = true
	tpl.KeyUsage = x509.KeyUsageCertSign | x509.KeyUsageCRLSign
	tpl.SignatureAlgorithm = alg
	return tpl, nil
}

// selfSigned creates a self-signed root certificate for key.
func selfSigned(subject pkix.Name, key crypto.Signer, alg x509.SignatureAlgorithm, now time.Time) (*x509.Certificate, error) {
	tpl, err := caTemplate(subject, alg, now)
	if err != nil {
		return nil, err
	}
	return create(tpl, tpl, key.Public(), key)
}

// intermediate creates a CA certificate for key issued by parent, limited to
// issuing leaves (path length 0).
func intermediate(subject pkix.Name, key *rsa.PrivateKey, parent *x509.Certificate, parentKey *rsa.PrivateKey, now time.Time) (*x509.Certificate, error) {
	tpl, err := caTemplate(subject, x509.SHA256WithRSA, now)
	if err != nil {
		return nil, err
	}
	tpl.MaxPathLen = 0
	tpl.MaxPathLenZero = true
	return create(tpl, parent, &key.PublicKey, parentKey)
}

// create signs tpl with parentKey under parent and parses the result.
func create(tpl, parent *x509.Certificate, pub crypto.PublicKey, parentKey crypto.Signer) (*x509.Certificate, error) {
	der, err := x509.CreateCertificate(rand.Reader, tpl, parent, pub, parentKey)
	if err != nil {
		return nil, fmt.Errorf("devpki: create certificate %q: %w", tpl.Subject.CommonName, err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("devpki: parse certificate %q: %w", tpl.Subject.CommonName, err)
	}
	return c, nil
}

// certPEM returns c as a "CERTIFICATE" PEM block.
func certPEM(c *x509.Certificate) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: pemTypeCertificate, Bytes: c.Raw})
}
