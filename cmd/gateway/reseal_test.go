package main

import (
	"bytes"
	"context"
	"testing"
	"time"

	"github.com/alipay-notify-gateway/gateway/internal/notify"
	"github.com/alipay-notify-gateway/gateway/internal/pgtest"
	"github.com/alipay-notify-gateway/gateway/internal/postgres"
	"github.com/alipay-notify-gateway/gateway/internal/testkit"
)

var (
	keyA = testkit.TokenKey
	keyB = testkit.OtherTokenKey
	keyX = []byte("xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx") // configured nowhere
)

// sealWith seals plaintext for authAppID's authorization under key.
func sealWith(t *testing.T, key []byte, authAppID, plaintext string) []byte {
	t.Helper()
	b, err := testkit.SealerOf(t, key).Seal(plaintext, notify.TokenOwner(testkit.AppID, authAppID))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// grant stores authAppID's authorization at ms with these sealed tokens.
func grant(t *testing.T, db *postgres.DB, authAppID string, ms int64, token, refresh []byte) {
	t.Helper()
	_, err := db.SaveGrant(context.Background(), notify.AuthGrant{
		Origin:    notify.Origin{AppID: testkit.AppID, NotifyID: "oauth:" + authAppID, At: ms},
		AuthAppID: authAppID, AuthTime: ms, SealedAuthToken: token, SealedRefreshToken: refresh, ExpiresIn: 3600,
	})
	if err != nil {
		t.Fatal(err)
	}
}

// stored returns authAppID's sealed tokens.
func stored(t *testing.T, db *postgres.DB, authAppID string) (token, refresh []byte) {
	t.Helper()
	err := db.Pool.QueryRow(context.Background(), `SELECT app_auth_token, app_refresh_token FROM authorizations
        WHERE app_id = $1 AND auth_app_id = $2`, testkit.AppID, authAppID).Scan(&token, &refresh)
	if err != nil {
		t.Fatal(err)
	}
	return token, refresh
}

// TestResealTokens: with B current and A old, tokens under A (key id and
// legacy forms) are sealed again under B; tokens under B stay; tokens under
// a key not configured are reported and left; a second run finds nothing
// to do.
func TestResealTokens(t *testing.T) {
	t.Parallel()
	db := pgtest.New(t)
	ctx := context.Background()
	ms := time.Now().UnixMilli()
	grant(t, db, "underA", ms, sealWith(t, keyA, "underA", "tA"), sealWith(t, keyA, "underA", "rA"))
	grant(t, db, "legacyA", ms, testkit.LegacySeal(t, keyA, "tL", notify.TokenOwner(testkit.AppID, "legacyA")), nil)
	grant(t, db, "legacyB", ms, testkit.LegacySeal(t, keyB, "tLB", notify.TokenOwner(testkit.AppID, "legacyB")), nil)
	grant(t, db, "underB", ms, sealWith(t, keyB, "underB", "tB"), sealWith(t, keyB, "underB", "rB"))
	grant(t, db, "underX", ms, sealWith(t, keyX, "underX", "tX"), sealWith(t, keyA, "underX", "rA"))
	xToken, _ := stored(t, db, "underX")
	rotated := testkit.SealerOf(t, keyB, keyA)
	onlyB := testkit.SealerOf(t, keyB)
	log := testkit.Logger(t)
	want := map[string][2]string{"underA": {"tA", "rA"}, "legacyA": {"tL", ""}, "legacyB": {"tLB", ""}, "underB": {"tB", "rB"}}

	t.Run("OKDryRun", func(t *testing.T) {
		before, _ := stored(t, db, "underA")
		n, err := resealTokens(ctx, db, rotated, true, 2, log)
		if err != nil || n != (resealCounts{Resealed: 5, Current: 2, Unreadable: 1}) {
			t.Fatalf("%+v %v", n, err)
		}
		if after, _ := stored(t, db, "underA"); !bytes.Equal(before, after) {
			t.Fatal("a dry run wrote")
		}
	})
	t.Run("OK", func(t *testing.T) {
		n, err := resealTokens(ctx, db, rotated, false, 2, log)
		if err != nil || n != (resealCounts{Resealed: 5, Current: 2, Unreadable: 1}) {
			t.Fatalf("%+v %v", n, err)
		}
		for authAppID, w := range want {
			token, refresh := stored(t, db, authAppID)
			owner := notify.TokenOwner(testkit.AppID, authAppID)
			gotT, err1 := onlyB.Open(token, owner)
			gotR, err2 := onlyB.Open(refresh, owner)
			if err1 != nil || err2 != nil || gotT != w[0] || gotR != w[1] || !onlyB.IsCurrent(token, owner) {
				t.Fatalf("%s: %q %q %v %v", authAppID, gotT, gotR, err1, err2)
			}
		}
		// Under a key not configured: left as it is; its other token is
		// resealed.
		token, refresh := stored(t, db, "underX")
		if !bytes.Equal(token, xToken) {
			t.Fatal("an unreadable token was changed")
		}
		if got, err := onlyB.Open(refresh, notify.TokenOwner(testkit.AppID, "underX")); err != nil || got != "rA" {
			t.Fatalf("%q %v", got, err)
		}
	})
	t.Run("OKAgain", func(t *testing.T) {
		n, err := resealTokens(ctx, db, rotated, false, 2, log)
		if err != nil || n != (resealCounts{Current: 7, Unreadable: 1}) {
			t.Fatalf("%+v %v", n, err)
		}
	})
}

// grantingStore lets a grant land between reseal's read and its write.
type grantingStore struct {
	*postgres.DB
	before func()
}

func (s grantingStore) ReplaceSealedTokens(ctx context.Context, t postgres.SealedTokens, token, refresh []byte) (bool, error) {
	s.before()
	return s.DB.ReplaceSealedTokens(ctx, t, token, refresh)
}

// TestResealTokens_ChangedMeanwhile: a grant written between the read and
// the write wins; the run counts it and a second run reseals it if needed.
func TestResealTokens_ChangedMeanwhile(t *testing.T) {
	t.Parallel()
	db := pgtest.New(t)
	ctx := context.Background()
	ms := time.Now().UnixMilli()
	grant(t, db, "m", ms, sealWith(t, keyA, "m", "old"), nil)
	granted := sealWith(t, keyA, "m", "new") // by a gateway still on the old key
	store := grantingStore{DB: db, before: func() { grant(t, db, "m", ms+1, granted, nil) }}
	rotated := testkit.SealerOf(t, keyB, keyA)
	log := testkit.Logger(t)
	t.Run("OK", func(t *testing.T) {
		n, err := resealTokens(ctx, store, rotated, false, 10, log)
		if err != nil || n != (resealCounts{Changed: 1}) {
			t.Fatalf("%+v %v", n, err)
		}
		if token, _ := stored(t, db, "m"); !bytes.Equal(token, granted) {
			t.Fatal("reseal overwrote the grant")
		}
		n, err = resealTokens(ctx, db, rotated, false, 10, log)
		token, _ := stored(t, db, "m")
		got, _ := rotated.Open(token, notify.TokenOwner(testkit.AppID, "m"))
		if err != nil || n != (resealCounts{Resealed: 1}) || got != "new" || !rotated.IsCurrent(token, notify.TokenOwner(testkit.AppID, "m")) {
			t.Fatalf("%+v %v %q", n, err, got)
		}
	})
}
