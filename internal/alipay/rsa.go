package alipay

import (
	"bytes"
	"crypto"
	"crypto/rsa"
	"errors"

	"filippo.io/bigmod"
)

// rsaKey is an Alipay public key made ready for verification. crypto/rsa
// works out the modulus's Montgomery constants again on every call, a
// quarter of a 2048-bit verification; here they are worked out once, when
// the Verifier is built. The arithmetic is crypto/rsa's own:
// filippo.io/bigmod is the standard library's crypto/internal/fips140/bigmod,
// exported. open and isPKCS1v15 follow crypto/rsa's VerifyPKCS1v15 step for
// step, and the tests hold them to its answers.
type rsaKey struct {
	n *bigmod.Modulus
	e uint
}

// newRSAKey prepares pub. Like crypto/rsa, it refuses a key of under 1024
// bits, an even modulus, and an exponent that is even, under 3, or over
// 2³¹-1.
func newRSAKey(pub *rsa.PublicKey) (*rsaKey, error) {
	switch {
	case pub == nil || pub.N == nil:
		return nil, errors.New("rsa: missing public modulus")
	case pub.N.BitLen() < 1024:
		return nil, errors.New("rsa: a key of under 1024 bits is insecure")
	case pub.N.Bit(0) == 0:
		return nil, errors.New("rsa: public modulus is even")
	case pub.E < 3 || pub.E&1 == 0 || pub.E > 1<<31-1:
		return nil, errors.New("rsa: public exponent is not an odd number from 3 to 2³¹-1")
	}
	n, err := bigmod.NewModulus(pub.N.Bytes())
	if err != nil {
		return nil, err
	}
	return &rsaKey{n: n, e: uint(pub.E)}, nil
}

// open returns the message representative of sig, sig^e mod n as many bytes
// as the modulus (RFC 8017 section 8.2.2, steps 1 and 2), or nil when sig
// cannot be a signature of this key: of another length, or not below n.
func (k *rsaKey) open(sig []byte) []byte {
	if len(sig) != k.n.Size() {
		return nil
	}
	s, err := bigmod.NewNat().SetBytes(sig, k.n)
	if err != nil {
		return nil
	}
	return bigmod.NewNat().ExpShortVarTime(s, k.e, k.n).Bytes(k.n)
}

// digestInfoPrefixes are the DER DigestInfo headers that precede a digest
// in a PKCS #1 v1.5 signature (RFC 8017 section 9.2, note 1).
var digestInfoPrefixes = map[crypto.Hash][]byte{
	crypto.SHA1:   {0x30, 0x21, 0x30, 0x09, 0x06, 0x05, 0x2b, 0x0e, 0x03, 0x02, 0x1a, 0x05, 0x00, 0x04, 0x14},
	crypto.SHA256: {0x30, 0x31, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x01, 0x05, 0x00, 0x04, 0x20},
}

// isPKCS1v15 reports whether em, an opened signature, is the EMSA-PKCS1-v1_5
// encoding of digest under h: 0x00 0x01 0xff... 0x00 DigestInfo digest
// (RFC 8017 section 9.2). Like crypto/rsa, it builds the one valid encoding
// and compares, rather than parse em.
func isPKCS1v15(em []byte, h crypto.Hash, digest []byte) bool {
	d := pkcs1Digest(em, h)
	return d != nil && len(digest) == len(d) && bytes.Equal(d, digest)
}

// pkcs1Digest returns the digest em carries when everything before it is
// the one valid EMSA-PKCS1-v1_5 encoding under h for em's length, and nil
// otherwise. It looks at no content: a forged signature is refused here,
// before any signed content is built or hashed, so that it costs no more
// than the RSA operation a genuine one also needs.
func pkcs1Digest(em []byte, h crypto.Hash) []byte {
	prefix, ok := digestInfoPrefixes[h]
	k, t := len(em), len(prefix)+h.Size()
	if !ok || k < t+11 || em[0] != 0 || em[1] != 1 || em[k-t-1] != 0 {
		return nil
	}
	for _, b := range em[2 : k-t-1] {
		if b != 0xff {
			return nil
		}
	}
	if !bytes.Equal(em[k-t:k-h.Size()], prefix) {
		return nil
	}
	return em[k-h.Size():]
}

// open returns sig opened with k's key (see rsaKey.open), or nil. A Key
// that NewVerifier has not prepared is prepared for this one call.
func (k *Key) open(sig []byte) []byte {
	rk := k.prepared
	if rk == nil {
		var err error
		if rk, err = newRSAKey(k.Pub); err != nil {
			return nil
		}
	}
	return rk.open(sig)
}

// verify reports whether sig is k's PKCS #1 v1.5 signature of digest
// under h.
func (k *Key) verify(h crypto.Hash, digest, sig []byte) bool {
	em := k.open(sig)
	return em != nil && isPKCS1v15(em, h, digest)
}
