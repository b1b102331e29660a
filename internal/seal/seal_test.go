package seal_test

import (
	"bytes"
	"encoding/hex"
	"strings"
	"testing"

	"github.com/alipay-notify-gateway/gateway/internal/seal"
	"github.com/alipay-notify-gateway/gateway/internal/testkit"
)

var (
	keyA = testkit.TokenKey // testkit.Sealer's
	keyB = testkit.OtherTokenKey
	keyC = []byte("0123456789abcdef") // AES-128
)

func TestSealer(t *testing.T) {
	t.Parallel()
	s := testkit.Sealer(t)
	sealed, err := s.Seal("secret", "owner-a")
	if err != nil || strings.Contains(string(sealed), "secret") {
		t.Fatalf("%v", err)
	}
	t.Run("OK", func(t *testing.T) {
		if got, err := s.Open(sealed, "owner-a"); err != nil || got != "secret" {
			t.Fatalf("%q %v", got, err)
		}
		if got, err := s.Open(nil, "owner-a"); err != nil || got != "" {
			t.Fatalf("%q %v", got, err)
		}
		if !s.IsCurrent(sealed, "owner-a") || !s.IsCurrent(nil, "owner-a") {
			t.Fatal("a value Seal just made is not current")
		}
	})
	t.Run("OKKeyIDForm", func(t *testing.T) {
		// 0x01 | key id | 12-byte nonce | ciphertext | 16-byte tag.
		if len(sealed) != 1+4+12+len("secret")+16 || sealed[0] != 0x01 {
			t.Fatalf("sealed form % x", sealed)
		}
		again, _ := s.Seal("other", "owner-a")
		if !bytes.Equal(again[1:5], sealed[1:5]) {
			t.Fatal("one key, two key ids")
		}
		if b, _ := testkit.SealerOf(t, keyB).Seal("secret", "owner-a"); bytes.Equal(b[1:5], sealed[1:5]) {
			t.Fatal("two keys, one key id")
		}
	})
	t.Run("ErrOtherOwner", func(t *testing.T) {
		if _, err := s.Open(sealed, "owner-b"); err == nil {
			t.Fatal("opened for another owner")
		}
		if s.IsCurrent(sealed, "owner-b") {
			t.Fatal("current for another owner")
		}
	})
	t.Run("ErrOtherKey", func(t *testing.T) {
		if _, err := testkit.SealerOf(t, keyB).Open(sealed, "owner-a"); err == nil {
			t.Fatal("opened with another key")
		}
	})
	t.Run("ErrHeaderChanged", func(t *testing.T) {
		// The header is authenticated: stripped (as if legacy) or naming
		// another configured key, the value does not open.
		other := testkit.SealerOf(t, keyB, keyA)
		renamed := append([]byte(nil), sealed...)
		b, _ := other.Seal("x", "owner-a")
		copy(renamed[1:5], b[1:5])
		for name, v := range map[string][]byte{"stripped": sealed[5:], "renamed": renamed} {
			if _, err := other.Open(v, "owner-a"); err == nil {
				t.Fatalf("%s header: opened", name)
			}
		}
	})
}

// TestSealer_Rotation: the current key seals, old keys open; IsCurrent
// tells what a re-seal would change.
func TestSealer_Rotation(t *testing.T) {
	t.Parallel()
	underA, err := testkit.SealerOf(t, keyA).Seal("token", "owner")
	if err != nil {
		t.Fatal(err)
	}
	rotated := testkit.SealerOf(t, keyB, keyC, keyA) // B current, C and A old
	t.Run("OK", func(t *testing.T) {
		if got, err := rotated.Open(underA, "owner"); err != nil || got != "token" {
			t.Fatalf("%q %v", got, err)
		}
		if rotated.IsCurrent(underA, "owner") {
			t.Fatal("a value under an old key is current")
		}
		underB, _ := rotated.Seal("token", "owner")
		if !rotated.IsCurrent(underB, "owner") {
			t.Fatal("a value under the current key is not current")
		}
		if _, err := testkit.SealerOf(t, keyA).Open(underB, "owner"); err == nil {
			t.Fatal("the old key alone opened a value sealed under the new one")
		}
	})
	t.Run("OKLegacy", func(t *testing.T) {
		for name, key := range map[string][]byte{"current": keyB, "old": keyA, "old AES-128": keyC} {
			legacy := testkit.LegacySeal(t, key, "token", "owner")
			if got, err := rotated.Open(legacy, "owner"); err != nil || got != "token" {
				t.Fatalf("legacy under the %s key: %q %v", name, got, err)
			}
			// Even under the current key, the legacy form is to be re-sealed.
			if rotated.IsCurrent(legacy, "owner") {
				t.Fatalf("legacy under the %s key is current", name)
			}
		}
	})
	t.Run("OKLegacyLooksLikeHeader", func(t *testing.T) {
		// A legacy value whose nonce starts like the current key's header:
		// the header form fails, the legacy form opens.
		underB, _ := rotated.Seal("x", "owner")
		legacy := testkit.LegacySeal(t, keyB, "token", "owner", underB[:5]...)
		if got, err := rotated.Open(legacy, "owner"); err != nil || got != "token" {
			t.Fatalf("%q %v", got, err)
		}
		if rotated.IsCurrent(legacy, "owner") {
			t.Fatal("a legacy value is current")
		}
	})
	t.Run("ErrNotConfigured", func(t *testing.T) {
		underD, _ := testkit.SealerOf(t, []byte("ddddddddddddddddddddddddddddddd1")).Seal("token", "owner")
		if _, err := rotated.Open(underD, "owner"); err == nil || rotated.IsCurrent(underD, "owner") {
			t.Fatalf("a value under an unknown key: %v", err)
		}
		if _, err := rotated.Open(testkit.LegacySeal(t, []byte("ddddddddddddddddddddddddddddddd1"), "token", "owner"), "owner"); err == nil {
			t.Fatal("a legacy value under an unknown key opened")
		}
	})
}

func TestNew(t *testing.T) {
	t.Parallel()
	t.Run("OK", func(t *testing.T) {
		if _, err := seal.New(keyA, keyB, keyC); err != nil {
			t.Fatal(err)
		}
	})
	for name, tc := range map[string]struct {
		current []byte
		old     [][]byte
		want    string
	}{
		"ErrOldIsCurrent": {keyA, [][]byte{keyB, keyA}, "old key 2 is the current key"},
		"ErrOldRepeated":  {keyA, [][]byte{keyB, keyC, keyB}, "old key 3 repeats old key 1"},
		"ErrShortKey":     {keyA, [][]byte{[]byte("short")}, "old key 1"},
		"ErrShortCurrent": {[]byte("short"), nil, "token key"},
	} {
		t.Run(name, func(t *testing.T) {
			if _, err := seal.New(tc.current, tc.old...); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("%v; want %q", err, tc.want)
			}
		})
	}
}

// deriveWant is HMAC-SHA256 of "auth-state v1" under sealer's key, computed
// independently (Python's hmac module).
const deriveWant = "a2aa27e5e37d23384f1dbf9f3df7252218e84c17cdbdf0b070ca85ef1fa6e06f"

func TestSealer_DeriveKey(t *testing.T) {
	t.Parallel()
	s := testkit.Sealer(t)
	t.Run("OK", func(t *testing.T) {
		k := s.DeriveKey("auth-state v1")
		// A change of the derivation would refuse every state in flight:
		// it is pinned.
		if got := hex.EncodeToString(k); len(k) != 32 || got != deriveWant {
			t.Fatalf("%s", got)
		}
		if again := testkit.Sealer(t).DeriveKey("auth-state v1"); !bytes.Equal(again, k) {
			t.Fatal("another Sealer with the same key derives another key")
		}
		if bytes.Contains(k, []byte("0123456789abcdef")) {
			t.Fatal("the derived key shows the token key")
		}
	})
	t.Run("OKRing", func(t *testing.T) {
		// After a rotation the current key derives first, the old key's
		// derived key comes next, as it was.
		old := testkit.Sealer(t).DeriveKey("auth-state v1")
		next := testkit.SealerOf(t, keyB, keyA)
		keys := next.DeriveKeys("auth-state v1")
		if len(keys) != 2 || !bytes.Equal(keys[1], old) || bytes.Equal(keys[0], old) || !bytes.Equal(keys[0], next.DeriveKey("auth-state v1")) {
			t.Fatalf("%x", keys)
		}
	})
	t.Run("ErrOtherPurpose", func(t *testing.T) {
		if bytes.Equal(s.DeriveKey("auth-state v1"), s.DeriveKey("auth-state v2")) {
			t.Fatal("two purposes share a key")
		}
	})
	t.Run("ErrOtherKey", func(t *testing.T) {
		other := testkit.SealerOf(t, keyB)
		if bytes.Equal(s.DeriveKey("auth-state v1"), other.DeriveKey("auth-state v1")) {
			t.Fatal("two token keys derive the same key")
		}
	})
}

func TestParseKey(t *testing.T) {
	t.Parallel()
	for name, in := range map[string]string{
		"Base64":  "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=",
		"RawURL":  "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY",
		"Hex":     "3031323334353637383961626364656630313233343536373839616263646566",
		"AES128":  "MDEyMzQ1Njc4OWFiY2RlZg==",
		"Trimmed": "  MDEyMzQ1Njc4OWFiY2RlZg==\n",
	} {
		t.Run(name, func(t *testing.T) {
			if _, err := seal.ParseKey(in); err != nil {
				t.Fatal(err)
			}
		})
	}
	for name, in := range map[string]string{"ErrShort": "c2hvcnQ=", "ErrGarbage": "!!!", "ErrEmpty": ""} {
		t.Run(name, func(t *testing.T) {
			if _, err := seal.ParseKey(in); err == nil {
				t.Fatal("accepted")
			}
		})
	}
}
