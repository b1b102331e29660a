package postgres_test

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/alipay-notify-gateway/gateway/internal/notify"
	"github.com/alipay-notify-gateway/gateway/internal/pgtest"
	"github.com/alipay-notify-gateway/gateway/internal/postgres"
	"github.com/alipay-notify-gateway/gateway/internal/testkit"
)

// obGrant is a flow grant of authAppID at ms whose token expires after
// expiresIn seconds.
func obGrant(authAppID string, ms, expiresIn int64) notify.AuthGrant {
	return notify.AuthGrant{
		Origin:    notify.Origin{AppID: testkit.AppID, NotifyID: fmt.Sprintf("oauth:%s:%d", authAppID, ms), At: ms},
		AuthAppID: authAppID, UserID: "2088000000000009", AuthTime: ms,
		SealedAuthToken: []byte("sealed-token"), SealedRefreshToken: []byte("sealed-refresh"),
		ExpiresIn: expiresIn, ReExpiresIn: expiresIn + 3600,
	}
}

// obCancel ingests authAppID's cancellation notification at ms.
func obCancel(t *testing.T, db *postgres.DB, authAppID string, ms int64) notify.Outcome {
	t.Helper()
	biz := fmt.Sprintf(`{"app_id":%q,"auth_app_id":%q,"user_id":"2088000000000009"}`, testkit.AppID, authAppID)
	out, err := db.Ingest(context.Background(), testkit.Decide(t, testkit.Note(notify.MethodAuthCancelled, biz, ms)))
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func mustSave(t *testing.T, db *postgres.DB, g notify.AuthGrant) bool {
	t.Helper()
	ok, err := db.SaveGrant(context.Background(), g)
	if err != nil {
		t.Fatal(err)
	}
	return ok
}

func TestDB_SaveGrant(t *testing.T) {
	t.Parallel()
	db := pgtest.New(t)
	now := time.Now().UnixMilli()
	t.Run("OK", func(t *testing.T) {
		if !mustSave(t, db, obGrant("m1", now, 3600)) {
			t.Fatal("not applied")
		}
		if tok, err := db.AuthToken(context.Background(), testkit.AppID, "m1"); err != nil || string(tok) != "sealed-token" {
			t.Fatalf("%q %v", tok, err)
		}
	})
	t.Run("StaleAfterNewerCancel", func(t *testing.T) {
		if out := obCancel(t, db, "m1", now+1000); out.Status != notify.StatusApplied {
			t.Fatalf("%+v", out)
		}
		if mustSave(t, db, obGrant("m1", now+500, 3600)) {
			t.Fatal("an older grant overrode a newer cancellation")
		}
		_, err := db.AuthToken(context.Background(), testkit.AppID, "m1")
		if notify.ErrorCode(err) != notify.ECONFLICT {
			t.Fatalf("%v", err)
		}
	})
	t.Run("NewerGrantWins", func(t *testing.T) {
		if !mustSave(t, db, obGrant("m1", now+2000, 3600)) {
			t.Fatal("a newer grant was not applied")
		}
		if out := obCancel(t, db, "m1", now+1500); out.Status != notify.StatusStale {
			t.Fatalf("%+v", out)
		}
	})
}

func TestDB_AuthToken(t *testing.T) {
	t.Parallel()
	db := pgtest.New(t)
	ctx := context.Background()
	now := time.Now().UnixMilli()
	mustSave(t, db, obGrant("ok", now, 3600))
	mustSave(t, db, obGrant("old", now-2*3600*1000, 3600))
	mustSave(t, db, obGrant("gone", now, 3600))
	obCancel(t, db, "gone", now+1)
	obCancel(t, db, "never", now)
	for _, tc := range []struct {
		name, authAppID, code, reason string
	}{
		{"OK", "ok", "", ""},
		{"ErrNotFound", "nobody", notify.ENOTFOUND, "unknown_authorization"},
		{"ErrCancelled", "gone", notify.ECONFLICT, "authorization_cancelled"},
		{"ErrCancelledNeverGranted", "never", notify.ECONFLICT, "authorization_cancelled"},
		{"ErrExpired", "old", notify.ECONFLICT, "token_expired"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := db.AuthToken(ctx, testkit.AppID, tc.authAppID)
			if notify.ErrorCode(err) != tc.code || tc.code != "" && notify.ErrorReason(err) != tc.reason {
				t.Fatalf("%v", err)
			}
		})
	}
}

func send(key string) *notify.TemplateSend {
	return &notify.TemplateSend{AppID: testkit.AppID, IdempotencyKey: key, RequestHash: "h",
		Request: []byte(`{"to_user_id":"2088000000000001","user_template_id":"t","page":"p","data":{"k":{"value":"v"}}}`)}
}

// request reads back a stored send's request.
func request(t *testing.T, s *notify.TemplateSend) (req struct {
	UserTemplateID string          `json:"user_template_id"`
	Data           json.RawMessage `json:"data"`
}) {
	t.Helper()
	if err := json.Unmarshal(s.Request, &req); err != nil {
		t.Fatal(err)
	}
	return req
}

func TestDB_StartSend(t *testing.T) {
	t.Parallel()
	db := pgtest.New(t)
	ctx := context.Background()
	t.Run("OK", func(t *testing.T) {
		s := send("k1")
		prior, err := db.StartSend(ctx, s)
		if err != nil || prior != nil || s.ID == 0 || s.CreatedAt.IsZero() {
			t.Fatalf("%+v %+v %v", s, prior, err)
		}
		s.Status, s.Code, s.Msg, s.LatencyMS = notify.SendSent, "10000", "Success", 12
		if err := db.FinishSend(ctx, s); err != nil || s.FinishedAt == nil {
			t.Fatal(err)
		}
		got, err := db.SendByKey(ctx, testkit.AppID, "k1")
		if err != nil || got.ID != s.ID || got.Status != notify.SendSent || got.LatencyMS != 12 || request(t, got).UserTemplateID != "t" ||
			string(request(t, got).Data) != `{"k": {"value": "v"}}` && string(request(t, got).Data) != `{"k":{"value":"v"}}` {
			t.Fatalf("%+v %v", got, err)
		}
	})
	t.Run("Duplicate", func(t *testing.T) {
		prior, err := db.StartSend(ctx, send("k1"))
		if err != nil || prior == nil || prior.Status != notify.SendSent {
			t.Fatalf("%+v %v", prior, err)
		}
	})
	t.Run("OtherApp", func(t *testing.T) {
		// Keys are the app's: another app's k1 is another send.
		other := send("k1")
		other.AppID = testkit.OtherAppID
		prior, err := db.StartSend(ctx, other)
		if err != nil || prior != nil || other.ID == 0 {
			t.Fatalf("%+v %v", prior, err)
		}
		if prior, err := db.StartSend(ctx, send("k1")); err != nil || prior == nil || prior.ID == other.ID || prior.Status != notify.SendSent {
			t.Fatalf("the first app's retry: %+v %v", prior, err)
		}
		if got, err := db.SendByKey(ctx, other.AppID, "k1"); err != nil || got.ID != other.ID || got.Status != notify.SendPending {
			t.Fatalf("%+v %v", got, err)
		}
		if _, err := db.SendByKey(ctx, "2021000000000053", "k1"); notify.ErrorCode(err) != notify.ENOTFOUND {
			t.Fatalf("a third app found k1: %v", err)
		}
	})
	t.Run("NoKey", func(t *testing.T) {
		for i := 0; i < 2; i++ {
			if prior, err := db.StartSend(ctx, send("")); err != nil || prior != nil {
				t.Fatalf("%+v %v", prior, err)
			}
		}
	})
	t.Run("Concurrent", func(t *testing.T) {
		var started atomic.Int64
		testkit.Concurrently(10, func(int) {
			prior, err := db.StartSend(ctx, send("k2"))
			if err != nil {
				t.Error(err)
			} else if prior == nil {
				started.Add(1)
			}
		})
		if starts := started.Load(); starts != 1 {
			t.Fatalf("%d calls started the same key", starts)
		}
	})
	t.Run("ErrNotFound", func(t *testing.T) {
		if _, err := db.SendByKey(ctx, testkit.AppID, "nope"); notify.ErrorCode(err) != notify.ENOTFOUND {
			t.Fatal(err)
		}
	})
}

func TestDB_ClaimRefresh(t *testing.T) {
	t.Parallel()
	db := pgtest.New(t)
	ctx := context.Background()
	now := time.Now()
	ms := now.UnixMilli()
	mustSave(t, db, obGrant("soon", ms, 3600))      // due within a day
	mustSave(t, db, obGrant("later", ms, 30*86400)) // not due
	mustSave(t, db, obGrant("dead", ms, 3600))      // cancelled: never
	obCancel(t, db, "dead", ms+1)
	window := now.Add(24 * time.Hour)

	t.Run("OK", func(t *testing.T) {
		d, err := db.ClaimRefresh(ctx, []string{testkit.AppID}, window, time.Hour)
		if err != nil || d == nil || d.AuthAppID != "soon" || string(d.SealedRefreshToken) != "sealed-refresh" {
			t.Fatalf("%+v %v", d, err)
		}
		// Claimed: not again within retryAfter.
		if d2, _ := db.ClaimRefresh(ctx, []string{testkit.AppID}, window, time.Hour); d2 != nil {
			t.Fatalf("claimed twice: %+v", d2)
		}
		ok, err := db.CompleteRefresh(ctx, d, notify.Refreshed{SealedAuthToken: []byte("new"), SealedRefreshToken: []byte("new-r"),
			At: now, ExpiresIn: 30 * 86400, ReExpiresIn: 31 * 86400})
		if err != nil || !ok {
			t.Fatal(err)
		}
		if tok, _ := db.AuthToken(ctx, testkit.AppID, "soon"); string(tok) != "new" {
			t.Fatalf("token %q", tok)
		}
	})
	t.Run("OtherApps", func(t *testing.T) {
		mustSave(t, db, obGrant("soon2", ms, 3600))
		if d, _ := db.ClaimRefresh(ctx, []string{"2021000000000099"}, window, time.Hour); d != nil {
			t.Fatal("claimed another app's authorization")
		}
	})
	t.Run("ChangedMeanwhile", func(t *testing.T) {
		d, err := db.ClaimRefresh(ctx, []string{testkit.AppID}, window, 0)
		if err != nil || d == nil || d.AuthAppID != "soon2" {
			t.Fatalf("%+v %v", d, err)
		}
		obCancel(t, db, "soon2", ms+5)
		if ok, err := db.CompleteRefresh(ctx, d, notify.Refreshed{SealedAuthToken: []byte("x"), At: now}); err != nil || ok {
			t.Fatalf("refreshed a cancelled authorization: %v %v", ok, err)
		}
		if err := db.FailRefresh(ctx, d, "whatever"); err != nil {
			t.Fatal(err)
		}
		if _, err := db.AuthToken(ctx, testkit.AppID, "soon2"); notify.ErrorCode(err) != notify.ECONFLICT {
			t.Fatalf("%v", err)
		}
	})
	t.Run("SkipLocked", func(t *testing.T) {
		for i := 0; i < 4; i++ {
			mustSave(t, db, obGrant(fmt.Sprintf("many%d", i), ms, 3600))
		}
		var (
			mu   sync.Mutex
			seen = map[string]int{}
		)
		testkit.Concurrently(8, func(int) {
			d, err := db.ClaimRefresh(ctx, []string{testkit.AppID}, window, time.Hour)
			if err != nil {
				t.Error(err)
			} else if d != nil {
				mu.Lock()
				seen[d.AuthAppID]++
				mu.Unlock()
			}
		})
		if len(seen) != 4 {
			t.Fatalf("claimed %v; want each of 4 once", seen)
		}
		for id, n := range seen {
			if n != 1 {
				t.Fatalf("%s claimed %d times", id, n)
			}
		}
	})
}

// TestDB_CompleteRefresh: a refresh moves the authorization's ordering to
// its EventAt, or 1 ms past the grant refreshed when that is later, so that
// no grant older than the refresh applies after it.
func TestDB_CompleteRefresh(t *testing.T) {
	t.Parallel()
	db := pgtest.New(t)
	ctx := context.Background()
	ms := time.Now().Add(-time.Hour).UnixMilli()
	// complete refreshes authAppID's grant g with EventAt eventAt.
	complete := func(t *testing.T, g notify.AuthGrant, eventAt int64) {
		t.Helper()
		d := &notify.DueRefresh{AppID: testkit.AppID, AuthAppID: g.AuthAppID, EventAt: g.At, EventNotifyID: g.NotifyID}
		ok, err := db.CompleteRefresh(ctx, d, notify.Refreshed{SealedAuthToken: []byte("refreshed"), SealedRefreshToken: []byte("refreshed-r"),
			At: time.Now(), ExpiresIn: 3600, EventAt: eventAt})
		if err != nil || !ok {
			t.Fatalf("%v %v", ok, err)
		}
	}
	ordering := func(t *testing.T, authAppID string) (int64, string) {
		t.Helper()
		var (
			at int64
			id string
		)
		if err := db.Pool.QueryRow(ctx, `SELECT event_at, event_notify_id FROM authorizations WHERE app_id = $1 AND auth_app_id = $2`,
			testkit.AppID, authAppID).Scan(&at, &id); err != nil {
			t.Fatal(err)
		}
		return at, id
	}
	again := func(g notify.AuthGrant, at int64) notify.AuthGrant {
		g.At, g.AuthTime, g.NotifyID = at, at, g.NotifyID+"~" // a greater notify_id
		g.SealedAuthToken = []byte("stale")
		return g
	}
	t.Run("OK", func(t *testing.T) {
		g := obGrant("c1", ms, 3600)
		mustSave(t, db, g)
		eventAt := ms + 30*60*1000 // the call started 35 minutes after the grant
		complete(t, g, eventAt)
		if at, id := ordering(t, "c1"); at != eventAt || !strings.HasPrefix(id, "refresh:") {
			t.Fatalf("(%d, %q); want (%d, refresh:...)", at, id, eventAt)
		}
		for name, at := range map[string]int64{"the grant again": ms, "an older grant": eventAt - 1, "at the same ms": eventAt} {
			if mustSave(t, db, again(g, at)) {
				t.Fatalf("%s applied after the refresh", name)
			}
		}
		if tok, _ := db.AuthToken(ctx, testkit.AppID, "c1"); string(tok) != "refreshed" {
			t.Fatalf("token %q", tok)
		}
		if out := obCancel(t, db, "c1", eventAt+1); out.Status != notify.StatusApplied {
			t.Fatalf("a cancellation dated after the refresh: %+v", out)
		}
	})
	t.Run("OKRecentGrant", func(t *testing.T) {
		// The call started within the skew after the grant: EventAt is
		// before it, the ordering moves 1 ms past it.
		g := obGrant("c2", ms, 3600)
		mustSave(t, db, g)
		complete(t, g, ms-60*1000)
		if at, _ := ordering(t, "c2"); at != ms+1 {
			t.Fatalf("event_at %d; want %d", at, ms+1)
		}
		if mustSave(t, db, again(g, ms)) {
			t.Fatal("the grant refreshed, delivered again with a greater notify_id, applied")
		}
		if !mustSave(t, db, again(g, ms+2)) {
			t.Fatal("a newer grant did not apply")
		}
	})
}
