package postgres_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/alipay-notify-gateway/gateway/internal/pgtest"
	"github.com/alipay-notify-gateway/gateway/internal/postgres"
	"github.com/alipay-notify-gateway/gateway/internal/testkit"
)

func TestDB_SealedTokensAfter(t *testing.T) {
	t.Parallel()
	db := pgtest.New(t)
	ctx := context.Background()
	ms := time.Now().UnixMilli()
	for i := 0; i < 5; i++ {
		mustSave(t, db, obGrant(fmt.Sprintf("m%d", i), ms, 3600))
	}
	obCancel(t, db, "m2", ms+1) // no tokens left: not listed
	t.Run("OK", func(t *testing.T) {
		var got []string
		afterApp, afterAuth := "", ""
		for page := 0; ; page++ {
			rows, err := db.SealedTokensAfter(ctx, afterApp, afterAuth, 2)
			if err != nil {
				t.Fatal(err)
			}
			for _, r := range rows {
				if r.AppID != testkit.AppID || string(r.AuthToken) != "sealed-token" || string(r.RefreshToken) != "sealed-refresh" {
					t.Fatalf("%+v", r)
				}
				got = append(got, r.AuthAppID)
			}
			if len(rows) < 2 {
				break
			}
			afterApp, afterAuth = rows[len(rows)-1].AppID, rows[len(rows)-1].AuthAppID
		}
		if fmt.Sprint(got) != "[m0 m1 m3 m4]" {
			t.Fatalf("walked %v", got)
		}
	})
}

func TestDB_ReplaceSealedTokens(t *testing.T) {
	t.Parallel()
	db := pgtest.New(t)
	ctx := context.Background()
	ms := time.Now().UnixMilli()
	read := func(t *testing.T, authAppID string) postgres.SealedTokens {
		t.Helper()
		r := postgres.SealedTokens{AppID: testkit.AppID, AuthAppID: authAppID}
		err := db.Pool.QueryRow(ctx, `SELECT app_auth_token, app_refresh_token FROM authorizations WHERE app_id = $1 AND auth_app_id = $2`,
			testkit.AppID, authAppID).Scan(&r.AuthToken, &r.RefreshToken)
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	t.Run("OK", func(t *testing.T) {
		mustSave(t, db, obGrant("r1", ms, 3600))
		ok, err := db.ReplaceSealedTokens(ctx, read(t, "r1"), []byte("resealed-token"), []byte("resealed-refresh"))
		if err != nil || !ok {
			t.Fatalf("%v %v", ok, err)
		}
		if got := read(t, "r1"); string(got.AuthToken) != "resealed-token" || string(got.RefreshToken) != "resealed-refresh" {
			t.Fatalf("%+v", got)
		}
	})
	t.Run("ErrGrantedMeanwhile", func(t *testing.T) {
		mustSave(t, db, obGrant("r2", ms, 3600))
		before := read(t, "r2")
		g := obGrant("r2", ms+1, 3600)
		g.SealedAuthToken, g.SealedRefreshToken = []byte("granted-token"), nil
		mustSave(t, db, g)
		if ok, err := db.ReplaceSealedTokens(ctx, before, []byte("resealed-token"), []byte("resealed-refresh")); err != nil || ok {
			t.Fatalf("overwrote a newer grant: %v %v", ok, err)
		}
		if got := read(t, "r2"); string(got.AuthToken) != "granted-token" || got.RefreshToken != nil {
			t.Fatalf("%+v", got)
		}
	})
	t.Run("ErrCancelledMeanwhile", func(t *testing.T) {
		mustSave(t, db, obGrant("r3", ms, 3600))
		before := read(t, "r3")
		obCancel(t, db, "r3", ms+1)
		if ok, err := db.ReplaceSealedTokens(ctx, before, []byte("resealed-token"), []byte("resealed-refresh")); err != nil || ok {
			t.Fatalf("wrote tokens into a cancelled authorization: %v %v", ok, err)
		}
		if _, err := db.AuthToken(ctx, testkit.AppID, "r3"); err == nil {
			t.Fatal("the cancelled authorization holds a token")
		}
	})
}
