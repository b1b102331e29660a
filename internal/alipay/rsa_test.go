package alipay

import (
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha1"
	"crypto/sha256"
	"fmt"
	"math/big"
	"testing"
)

// rsaKeys returns test keys of the sizes and exponents Alipay and
// crypto/rsa allow: 1024, 2048 and 3072 bits with 65537, and 1024-bit keys
// with the smallest and the largest exponent crypto/rsa accepts.
func rsaKeys(t testing.TB) map[string]*rsa.PrivateKey {
	t.Helper()
	keys := map[string]*rsa.PrivateKey{}
	for _, bits := range []int{1024, 2048, 3072} {
		k, err := rsa.GenerateKey(rand.Reader, bits)
		if err != nil {
			t.Fatal(err)
		}
		keys[fmt.Sprintf("%d-65537", bits)] = k
	}
	keys["1024-3"] = keyWithExponent(t, 1024, 3)
	keys["1024-2147483647"] = keyWithExponent(t, 1024, 1<<31-1)
	return keys
}

// keyWithExponent returns a key of bits bits with public exponent e
// (prime), which rsa.GenerateKey cannot make.
func keyWithExponent(t testing.TB, bits, e int) *rsa.PrivateKey {
	t.Helper()
	one, E := big.NewInt(1), big.NewInt(int64(e))
	for {
		p, err := rand.Prime(rand.Reader, bits/2)
		if err != nil {
			t.Fatal(err)
		}
		q, err := rand.Prime(rand.Reader, bits/2)
		if err != nil {
			t.Fatal(err)
		}
		n := new(big.Int).Mul(p, q)
		phi := new(big.Int).Mul(new(big.Int).Sub(p, one), new(big.Int).Sub(q, one))
		d := new(big.Int).ModInverse(E, phi)
		if p.Cmp(q) == 0 || n.BitLen() != bits || d == nil {
			continue
		}
		k := &rsa.PrivateKey{PublicKey: rsa.PublicKey{N: n, E: e}, D: d, Primes: []*big.Int{p, q}}
		if err := k.Validate(); err != nil {
			t.Fatal(err)
		}
		k.Precompute()
		return k
	}
}

func digest(h crypto.Hash, msg []byte) []byte {
	if h == crypto.SHA1 {
		d := sha1.Sum(msg)
		return d[:]
	}
	d := sha256.Sum256(msg)
	return d[:]
}

// checkAgainstStdlib fails t unless Key.verify answers as
// rsa.VerifyPKCS1v15 does for (h, digest, sig), and returns the answer.
func checkAgainstStdlib(t *testing.T, k *Key, h crypto.Hash, d, sig []byte) bool {
	t.Helper()
	want := rsa.VerifyPKCS1v15(k.Pub, h, d, sig) == nil
	if got := k.verify(h, d, sig); got != want {
		t.Fatalf("verify(%v, %x, %x) = %v; crypto/rsa says %v", h, d, sig, got, want)
	}
	return want
}

func TestKey_Verify(t *testing.T) {
	t.Parallel()
	for name, priv := range rsaKeys(t) {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			rk, err := newRSAKey(&priv.PublicKey)
			if err != nil {
				t.Fatal(err)
			}
			prepared := &Key{Pub: &priv.PublicKey, prepared: rk}
			unprepared := &Key{Pub: &priv.PublicKey}
			for _, h := range []crypto.Hash{crypto.SHA256, crypto.SHA1} {
				msg := []byte("notify_id=" + name + h.String())
				d := digest(h, msg)
				sig, err := rsa.SignPKCS1v15(nil, priv, h, d)
				if err != nil {
					t.Fatal(err)
				}
				t.Run(h.String()+"/OK", func(t *testing.T) {
					for _, k := range []*Key{prepared, unprepared} {
						if !checkAgainstStdlib(t, k, h, d, sig) {
							t.Fatal("a valid signature is refused")
						}
					}
				})
				size := len(sig)
				modulus := priv.N.FillBytes(make([]byte, size))
				other := crypto.SHA1
				if h == crypto.SHA1 {
					other = crypto.SHA256
				}
				type input struct {
					h      crypto.Hash
					d, sig []byte
				}
				bad := map[string]input{
					"ErrOtherMessage":     {h, digest(h, append(msg, '.')), sig},
					"ErrOtherHash":        {other, digest(other, msg), sig},
					"ErrShortSignature":   {h, d, sig[1:]},
					"ErrLongSignature":    {h, d, append([]byte{0}, sig...)},
					"ErrEmptySignature":   {h, d, nil},
					"ErrZero":             {h, d, make([]byte, size)},
					"ErrOne":              {h, d, append(make([]byte, size-1), 1)},
					"ErrModulus":          {h, d, modulus},
					"ErrModulusPlusSig":   {h, d, new(big.Int).Add(priv.N, new(big.Int).SetBytes(sig)).Bytes()},
					"ErrAllOnes":          {h, d, bytesOf(size, 0xff)},
					"ErrShortDigest":      {h, d[1:], sig},
					"ErrDigestOfOtherLen": {h, digest(other, msg), sig},
				}
				for bit := 0; bit < size*8; bit += 97 {
					flipped := append([]byte(nil), sig...)
					flipped[bit/8] ^= 1 << (bit % 8)
					bad[fmt.Sprintf("ErrFlippedBit%d", bit)] = input{h, d, flipped}
				}
				for c, in := range bad {
					t.Run(h.String()+"/"+c, func(t *testing.T) {
						for _, k := range []*Key{prepared, unprepared} {
							if checkAgainstStdlib(t, k, in.h, in.d, in.sig) {
								t.Fatal("a wrong signature is accepted")
							}
						}
					})
				}
			}
		})
	}
}

// TestKey_Verify_Forgery shows that a signature whose opened form merely
// starts right is refused: with e=3 and a 3072-bit key, anyone can compute
// a cube root whose cube begins 00 01 ff 00 DigestInfo digest and ends in
// garbage (Bleichenbacher, 2006), which fools a verifier that parses the
// encoding instead of comparing all of it.
func TestKey_Verify_Forgery(t *testing.T) {
	t.Parallel()
	priv := keyWithExponent(t, 3072, 3)
	k := &Key{Pub: &priv.PublicKey}
	d := digest(crypto.SHA256, []byte("notify_id=forged"))
	size := (priv.N.BitLen() + 7) / 8
	head := append([]byte{0x00, 0x01, 0xff, 0x00}, digestInfoPrefixes[crypto.SHA256]...)
	head = append(head, d...)
	lo := new(big.Int).SetBytes(append(head, make([]byte, size-len(head))...))
	hi := new(big.Int).SetBytes(append(head, bytesOf(size-len(head), 0xff)...))
	s := cubeRootCeil(lo)
	if new(big.Int).Exp(s, big.NewInt(3), nil).Cmp(hi) > 0 {
		t.Fatal("no cube root in range: the forgery needs a larger key")
	}
	sig := s.FillBytes(make([]byte, size))
	em := k.open(sig)
	if em == nil || string(em[:len(head)]) != string(head) {
		t.Fatalf("the forged signature opens to %x; want it to start %x", em, head)
	}
	if checkAgainstStdlib(t, k, crypto.SHA256, d, sig) {
		t.Fatal("the forgery is accepted")
	}
}

// cubeRootCeil returns the smallest s with s³ >= x (x > 0), by Newton's method.
func cubeRootCeil(x *big.Int) *big.Int {
	three := big.NewInt(3)
	s := new(big.Int).Lsh(big.NewInt(1), uint(x.BitLen()/3+1)) // s³ > x
	for {
		// s' = (2s + x/s²) / 3
		next := new(big.Int).Div(x, new(big.Int).Mul(s, s))
		next.Add(next, new(big.Int).Lsh(s, 1)).Div(next, three)
		if next.Cmp(s) >= 0 {
			break
		}
		s = next
	}
	for new(big.Int).Exp(s, three, nil).Cmp(x) < 0 {
		s.Add(s, big.NewInt(1))
	}
	for s.Sign() > 0 && new(big.Int).Exp(new(big.Int).Sub(s, big.NewInt(1)), three, nil).Cmp(x) >= 0 {
		s.Sub(s, big.NewInt(1))
	}
	return s
}

func bytesOf(n int, b byte) []byte {
	out := make([]byte, n)
	for i := range out {
		out[i] = b
	}
	return out
}

func TestNewRSAKey(t *testing.T) {
	t.Parallel()
	priv := keyWithExponent(t, 1024, 65537)
	t.Run("OK", func(t *testing.T) {
		if _, err := newRSAKey(&priv.PublicKey); err != nil {
			t.Fatal(err)
		}
	})
	small, err := rand.Prime(rand.Reader, 256)
	if err != nil {
		t.Fatal(err)
	}
	small.Mul(small, small)
	for name, pub := range map[string]*rsa.PublicKey{
		"ErrNil":          nil,
		"ErrNoModulus":    {E: 65537},
		"ErrSmallKey":     {N: small, E: 65537},
		"ErrEvenModulus":  {N: new(big.Int).Add(priv.N, big.NewInt(1)), E: 65537},
		"ErrExponentOne":  {N: priv.N, E: 1},
		"ErrEvenExponent": {N: priv.N, E: 65536},
		"ErrBigExponent":  {N: priv.N, E: 1<<31 + 1},
	} {
		t.Run(name, func(t *testing.T) {
			if _, err := newRSAKey(pub); err == nil {
				t.Fatal("want an error")
			}
			if pub == nil || pub.N == nil {
				return
			}
			// crypto/rsa refuses it too.
			d := digest(crypto.SHA256, []byte("x"))
			if rsa.VerifyPKCS1v15(pub, crypto.SHA256, d, make([]byte, (pub.N.BitLen()+7)/8)) == nil {
				t.Fatal("crypto/rsa accepts it")
			}
			if _, err := NewVerifier([]*App{{ID: "a", Keys: []Key{{Pub: pub}}}}); err == nil {
				t.Fatal("NewVerifier takes it")
			}
		})
	}
}

// FuzzKey_Verify holds Key.verify to crypto/rsa's answers for any
// signature bytes and message.
func FuzzKey_Verify(f *testing.F) {
	priv := keyWithExponent(f, 1024, 65537)
	k := &Key{Pub: &priv.PublicKey}
	rk, err := newRSAKey(k.Pub)
	if err != nil {
		f.Fatal(err)
	}
	k.prepared = rk
	for _, h := range []crypto.Hash{crypto.SHA256, crypto.SHA1} {
		msg := []byte("notify_id=1")
		sig, err := rsa.SignPKCS1v15(nil, priv, h, digest(h, msg))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(sig, msg, h == crypto.SHA1)
	}
	f.Add([]byte{}, []byte{}, false)
	f.Fuzz(func(t *testing.T, sig, msg []byte, sha1 bool) {
		h := crypto.SHA256
		if sha1 {
			h = crypto.SHA1
		}
		checkAgainstStdlib(t, k, h, digest(h, msg), sig)
	})
}
