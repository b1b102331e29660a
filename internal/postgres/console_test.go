package postgres_test

import (
	"bytes"
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/alipay-notify-gateway/gateway/internal/notify"
	"github.com/alipay-notify-gateway/gateway/internal/pgtest"
	"github.com/alipay-notify-gateway/gateway/internal/postgres"
	"github.com/alipay-notify-gateway/gateway/internal/testkit"
	"github.com/alipay-notify-gateway/gateway/internal/view"
)

func TestDB_ConsoleSession(t *testing.T) {
	t.Parallel()
	db := pgtest.New(t)
	ctx := context.Background()
	id, token := []byte("id-hash-1"), []byte("token-hash")
	t.Run("OK", func(t *testing.T) {
		if err := db.CreateConsoleSession(ctx, id, token, "csrf-1", time.Now().Add(time.Hour)); err != nil {
			t.Fatal(err)
		}
		s, err := db.ConsoleSession(ctx, id)
		if err != nil || s.CSRFToken != "csrf-1" || !bytes.Equal(s.TokenHash, token) {
			t.Fatalf("%+v %v", s, err)
		}
	})
	t.Run("ErrExpired", func(t *testing.T) {
		old := []byte("id-hash-old")
		if err := db.CreateConsoleSession(ctx, old, token, "csrf-0", time.Now().Add(-time.Second)); err != nil {
			t.Fatal(err)
		}
		if _, err := db.ConsoleSession(ctx, old); notify.ErrorCode(err) != notify.ENOTFOUND {
			t.Fatalf("expired session: %v", err)
		}
		// The next sign-in deletes it.
		if err := db.CreateConsoleSession(ctx, []byte("id-hash-2"), token, "csrf-2", time.Now().Add(time.Hour)); err != nil {
			t.Fatal(err)
		}
		var n int
		_ = db.Pool.QueryRow(ctx, `SELECT count(*) FROM console_sessions WHERE id_hash = $1`, old).Scan(&n)
		if n != 0 {
			t.Fatal("expired session kept")
		}
	})
	t.Run("ErrSignedOut", func(t *testing.T) {
		if err := db.DeleteConsoleSession(ctx, id); err != nil {
			t.Fatal(err)
		}
		if _, err := db.ConsoleSession(ctx, id); notify.ErrorCode(err) != notify.ENOTFOUND {
			t.Fatalf("signed-out session: %v", err)
		}
		if err := db.DeleteConsoleSession(ctx, id); err != nil { // again: no error
			t.Fatal(err)
		}
	})
	t.Run("ErrDuplicateID", func(t *testing.T) {
		if err := db.CreateConsoleSession(ctx, []byte("id-hash-2"), token, "x", time.Now().Add(time.Hour)); err == nil {
			t.Fatal("a second session under one id")
		}
	})
}

// received sets a stored notification's received_at.
func received(t *testing.T, db *postgres.DB, notifyID string, at time.Time) {
	t.Helper()
	if _, err := db.Pool.Exec(context.Background(), `UPDATE notifications SET received_at = $2 WHERE notify_id = $1`, notifyID, at); err != nil {
		t.Fatal(err)
	}
}

func TestDB_IntakeCounts(t *testing.T) {
	t.Parallel()
	db := pgtest.New(t)
	ctx := context.Background()
	now := time.Now().Truncate(time.Second)
	at := func(n *notify.Notification, ago time.Duration) {
		ingest(t, db, n)
		received(t, db, n.NotifyID, now.Add(-ago))
	}
	at(testkit.Note(notify.MethodAuditPassed, `{"mini_app_id":"c1","mini_app_version":"1"}`, 200), 10*time.Minute)
	at(testkit.Note(notify.MethodAuditRejected, `{"mini_app_id":"c1","mini_app_version":"1"}`, 100), 10*time.Minute) // stale
	at(testkit.Note("alipay.unknown.method", `{}`, 1), 30*time.Minute)                                               // unhandled
	at(testkit.Note(notify.MethodAuditPassed, `nope`, 1), 90*time.Minute)                                            // failed
	at(testkit.Note(notify.MethodAuditPassed, `{"mini_app_id":"c2"}`, 1), 25*time.Hour)                              // out of the day
	t.Run("OK", func(t *testing.T) {
		day, err := db.IntakeCounts(ctx, now, 24*time.Hour, time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		if len(day) != 24 || !day[0].Start.Equal(now.Add(-time.Hour)) {
			t.Fatalf("%d buckets, first %v", len(day), day[0].Start)
		}
		if b := day[0]; b.Applied != 1 || b.Stale != 1 || b.Unhandled != 1 || b.Failed != 0 || b.Total() != 3 {
			t.Fatalf("last hour %+v", b)
		}
		if b := day[1]; b.Failed != 1 || b.Total() != 1 {
			t.Fatalf("hour before %+v", b)
		}
		total := 0
		for _, b := range day {
			total += b.Total()
		}
		if total != 4 {
			t.Fatalf("day total %d", total)
		}
		hour, err := db.IntakeCounts(ctx, now, time.Hour, 5*time.Minute)
		if err != nil || len(hour) != 12 || hour[2].Total() != 2 || hour[6].Unhandled != 1 {
			t.Fatalf("%+v %v", hour, err)
		}
	})
	t.Run("ErrBucket", func(t *testing.T) {
		if _, err := db.IntakeCounts(ctx, now, time.Hour, 7*time.Minute); notify.ErrorCode(err) != notify.EINVALID {
			t.Fatal(err)
		}
	})
}

// grant is an authorization notification of merchant authAppID for AppID
// at ms, for PID user.
func grant(authAppID, user string, ms int64) *notify.Notification {
	n := testkit.Note(notify.MethodAuthGranted, fmt.Sprintf(`{"detail":{"app_id":"%s","auth_app_id":"%s","auth_time":%d,"app_auth_token":"tok-%d","app_refresh_token":"ref","expires_in":"3600","re_expires_in":7200,"user_id":"%s"}}`,
		testkit.AppID, authAppID, ms, ms, user), ms)
	n.Params["status"] = "execute_auth"
	return n
}

func TestDB_Merchants(t *testing.T) {
	t.Parallel()
	db := pgtest.New(t)
	ctx := context.Background()
	now := time.Now()
	for i, id := range []string{"2013000000000001", "2013000000000002", "2014000000000001", "2015000000000001"} {
		ingest(t, db, grant(id, "2088u"+id, now.Add(-time.Duration(i)*time.Minute).UnixMilli()))
	}
	ingest(t, db, testkit.Note(notify.MethodAuthCancelled, `{"auth_app_id":"2014000000000001"}`, now.UnixMilli()))
	_, err := db.Pool.Exec(ctx, `UPDATE authorizations SET refresh_error = 'isv.invalid-app-auth-token', expires_at = now() + interval '30 days' WHERE auth_app_id = '2015000000000001'`)
	if err != nil {
		t.Fatal(err)
	}
	ids := func(ms []*view.Merchant) string {
		var s []string
		for _, m := range ms {
			s = append(s, m.AuthAppID)
		}
		return strings.Join(s, ",")
	}
	for name, tc := range map[string]struct {
		f    view.MerchantFilter
		want string
	}{
		"All":          {view.MerchantFilter{}, "2013000000000001,2013000000000002,2014000000000001,2015000000000001"},
		"Exact":        {view.MerchantFilter{AuthAppID: "2013000000000002"}, "2013000000000002"},
		"Prefix":       {view.MerchantFilter{Prefix: "2013"}, "2013000000000001,2013000000000002"},
		"PrefixNone":   {view.MerchantFilter{Prefix: "2012"}, ""},
		"Status":       {view.MerchantFilter{Status: "cancelled"}, "2014000000000001"},
		"RefreshError": {view.MerchantFilter{Problem: view.MerchantRefreshError}, "2015000000000001"},
		"Expiring":     {view.MerchantFilter{Problem: view.MerchantExpiring, Until: now.Add(7 * 24 * time.Hour)}, "2013000000000001,2013000000000002"},
		"Cancelled":    {view.MerchantFilter{Problem: view.MerchantCancelled, Since: now.Add(-time.Hour)}, "2014000000000001"},
		"CancelledOld": {view.MerchantFilter{Problem: view.MerchantCancelled, Since: now.Add(time.Hour)}, ""},
	} {
		t.Run(name, func(t *testing.T) {
			ms, _, err := db.Merchants(ctx, tc.f)
			if err != nil || ids(ms) != tc.want {
				t.Fatalf("got %q %v, want %q", ids(ms), err, tc.want)
			}
		})
	}
	t.Run("Paging", func(t *testing.T) {
		var seen []string
		f := view.MerchantFilter{Limit: 3}
		for {
			ms, next, err := db.Merchants(ctx, f)
			if err != nil {
				t.Fatal(err)
			}
			seen = append(seen, ids(ms))
			if next == "" {
				break
			}
			f.Cursor = next
		}
		if strings.Join(seen, "|") != "2013000000000001,2013000000000002,2014000000000001|2015000000000001" {
			t.Fatal(seen)
		}
	})
	t.Run("Fields", func(t *testing.T) {
		ms, _, _ := db.Merchants(ctx, view.MerchantFilter{AuthAppID: "2015000000000001"})
		if m := ms[0]; m.RefreshError != "isv.invalid-app-auth-token" || !m.HasToken || m.UserID != "2088u2015000000000001" || m.EventNotifyID == "" {
			t.Fatalf("%+v", m)
		}
	})
	t.Run("ErrCursor", func(t *testing.T) {
		if _, _, err := db.Merchants(ctx, view.MerchantFilter{Cursor: "!!"}); notify.ErrorCode(err) != notify.EINVALID {
			t.Fatal(err)
		}
	})
}

func TestDB_MiniAppsAndMerchantNotifications(t *testing.T) {
	t.Parallel()
	db := pgtest.New(t)
	ctx := context.Background()
	const merchant, pid = "2021000000000777", "2088000000000777"
	g := grant(merchant, pid, 1000)
	ingest(t, db, g)
	audit := testkit.Note(notify.MethodAuditRejected, `{"mini_app_id":"`+merchant+`","mini_app_version":"1.0.0","audit_reason":"bad"}`, 2000)
	ingest(t, db, audit)
	other := testkit.Note(notify.MethodAuditPassed, `{"mini_app_id":"2021000000000888","mini_app_version":"1.0.0"}`, 2000)
	ingest(t, db, other)
	order := testkit.Note(notify.MethodMerchantConfirmed, `{"order_no":"o-777","min_app_id":"2021000000000999","status":"PROCESS","pid":"`+pid+`"}`, 3000)
	ingest(t, db, order)
	unrelated := testkit.Note(notify.MethodMerchantConfirmed, `{"order_no":"o-1","min_app_id":"2021000000000111","status":"PROCESS","pid":"2088other"}`, 3000)
	ingest(t, db, unrelated)
	ingest(t, db, testkit.Note(notify.MethodAuditPassed, `{"mini_app_id":"2021000000000999","mini_app_version":"0.1"}`, 4000))

	t.Run("MiniApps", func(t *testing.T) {
		all, _, err := db.MiniApps(ctx, view.MiniAppFilter{})
		if err != nil || len(all) != 3 {
			t.Fatalf("%d %v", len(all), err)
		}
		some, _, _ := db.MiniApps(ctx, view.MiniAppFilter{IDs: []string{merchant, "nope"}})
		rejected, _, _ := db.MiniApps(ctx, view.MiniAppFilter{AuditStatus: notify.AuditRejected})
		prefix, _, _ := db.MiniApps(ctx, view.MiniAppFilter{Prefix: "20210000000008"})
		if len(some) != 1 || some[0].AuditStatus != notify.AuditRejected || len(rejected) != 1 || len(prefix) != 1 || prefix[0].MiniAppID != "2021000000000888" {
			t.Fatalf("%+v %+v %+v", some, rejected, prefix)
		}
	})
	t.Run("OrdersOf", func(t *testing.T) {
		byPID, err := db.OrdersOf(ctx, []string{merchant}, []string{pid}, 10)
		byApp, _ := db.OrdersOf(ctx, []string{"2021000000000999"}, nil, 10)
		none, _ := db.OrdersOf(ctx, nil, nil, 10)
		if err != nil || len(byPID) != 1 || byPID[0].OrderNo != "o-777" || len(byApp) != 1 || len(none) != 0 {
			t.Fatalf("%+v %+v %+v %v", byPID, byApp, none, err)
		}
	})
	t.Run("MerchantNotifications", func(t *testing.T) {
		ns, err := db.MerchantNotifications(ctx, merchant, []string{merchant, "2021000000000999"}, []string{"o-777"}, 10)
		if err != nil {
			t.Fatal(err)
		}
		got := map[string]bool{}
		for _, n := range ns {
			got[n.NotifyID] = true
		}
		if len(ns) != 4 || !got[g.NotifyID] || !got[audit.NotifyID] || !got[order.NotifyID] || got[other.NotifyID] || got[unrelated.NotifyID] {
			t.Fatalf("%d notifications: %v", len(ns), got)
		}
		few, _ := db.MerchantNotifications(ctx, merchant, []string{merchant, "2021000000000999"}, []string{"o-777"}, 2)
		if len(few) != 2 || few[0].ReceivedAt.Before(few[1].ReceivedAt) {
			t.Fatalf("%+v", few)
		}
	})
}

func TestDB_ReconcileSummary(t *testing.T) {
	t.Parallel()
	db := pgtest.New(t)
	ctx := context.Background()
	since := time.Now().Add(-24 * time.Hour)
	t.Run("Empty", func(t *testing.T) {
		s, err := db.ReconcileSummary(ctx, since)
		if err != nil || s.Repaired != 0 || s.Errors != 0 || !s.Since.Equal(since) {
			t.Fatalf("%+v %v", s, err)
		}
	})
	// Drift and errors of 3 days, one every 6 hours (ids in time order):
	// 4 of each in the last day.
	_, err := db.Pool.Exec(ctx, `
        INSERT INTO reconcile_drift (run_id, app_id, auth_app_id, kind, entity, field, after, observed_at, notify_id, created_at)
        SELECT g, 'app', 'm' || g, 'authorization', 'm' || g, 'status', 'cancelled', now(), 'reconcile:' || g,
            now() - (12 - g) * interval '6 hours' - interval '1 minute' FROM generate_series(1, 12) g;
        INSERT INTO reconcile_errors (run_id, app_id, kind, at)
        SELECT g, 'app', 'upstream', now() - (12 - g) * interval '6 hours' - interval '1 minute' FROM generate_series(1, 12) g`)
	if err != nil {
		t.Fatal(err)
	}
	t.Run("OK", func(t *testing.T) {
		s, err := db.ReconcileSummary(ctx, since)
		if err != nil || s.Repaired != 4 || s.Errors != 4 {
			t.Fatalf("%+v %v", s, err)
		}
		all, _ := db.ReconcileSummary(ctx, time.Now().Add(-30*24*time.Hour)) // nothing older: every row
		none, _ := db.ReconcileSummary(ctx, time.Now())
		if all.Repaired != 12 || all.Errors != 12 || none.Repaired != 0 || none.Errors != 0 {
			t.Fatalf("all %+v, none %+v", all, none)
		}
	})
	t.Run("DriftOfRun", func(t *testing.T) {
		ds, _, err := db.Drift(ctx, view.DriftFilter{RunID: 3})
		if err != nil || len(ds) != 1 || ds[0].RunID != 3 || ds[0].AuthAppID != "m3" {
			t.Fatalf("%+v %v", ds, err)
		}
		ds, next, _ := db.Drift(ctx, view.DriftFilter{Limit: 5})
		more, _, _ := db.Drift(ctx, view.DriftFilter{Limit: 5, Cursor: next})
		if len(ds) != 5 || ds[0].RunID != 12 || len(more) != 5 || more[0].RunID != 7 {
			t.Fatalf("pages %+v %+v", ds, more)
		}
	})
}

func TestDB_BatchList(t *testing.T) {
	t.Parallel()
	db := pgtest.New(t)
	ctx := context.Background()
	// Batch 1 finished (8 sent, 2 unknown), 2 running (3 sent, 1 sending,
	// 6 pending), 3 paused of another app (5 pending, 5 failed).
	_, err := db.Pool.Exec(ctx, `
        INSERT INTO template_message_batches (app_id, request_hash, user_template_id, page, total, status, finished_at)
        VALUES ('app', 'h1', 't1', 'p', 10, 'finished', now()), ('app', 'h2', 't2', 'p', 10, 'running', NULL),
            ('other', 'h3', 't3', 'p', 10, 'paused', NULL);
        INSERT INTO template_message_recipients (batch_id, seq, to_user_id, status)
        SELECT b, g, '2088' || g, CASE
            WHEN b = 1 THEN CASE WHEN g <= 8 THEN 'sent' ELSE 'unknown' END
            WHEN b = 2 THEN CASE WHEN g <= 3 THEN 'sent' WHEN g = 4 THEN 'sending' ELSE 'pending' END
            ELSE CASE WHEN g <= 5 THEN 'pending' ELSE 'failed' END END
        FROM generate_series(1, 3) b, generate_series(1, 10) g`)
	if err != nil {
		t.Fatal(err)
	}
	t.Run("OK", func(t *testing.T) {
		ps, next, err := db.BatchList(ctx, view.BatchFilter{})
		if err != nil || next != "" || len(ps) != 3 {
			t.Fatalf("%+v %q %v", ps, next, err)
		}
		b3, b2, b1 := ps[0], ps[1], ps[2]
		if b1.ID != 1 || b1.Left != 0 || b1.Unknown != 2 || b1.Done() != 10 || b1.Percent() != 100 || b1.FinishedAt == nil || b1.UserTemplateID != "t1" {
			t.Fatalf("batch 1 %+v", b1)
		}
		if b2.Left != 7 || b2.Unknown != 0 || b2.Percent() != 30 || b2.Status != "running" {
			t.Fatalf("batch 2 %+v", b2)
		}
		if b3.Left != 5 || b3.AppID != "other" || b3.Percent() != 50 {
			t.Fatalf("batch 3 %+v", b3)
		}
	})
	t.Run("Filters", func(t *testing.T) {
		app, _, _ := db.BatchList(ctx, view.BatchFilter{AppID: "app"})
		paused, _, _ := db.BatchList(ctx, view.BatchFilter{Status: "paused"})
		if len(app) != 2 || len(paused) != 1 || paused[0].ID != 3 {
			t.Fatalf("%+v %+v", app, paused)
		}
	})
	t.Run("Paging", func(t *testing.T) {
		first, next, err := db.BatchList(ctx, view.BatchFilter{Limit: 2})
		rest, last, _ := db.BatchList(ctx, view.BatchFilter{Limit: 2, After: next})
		if err != nil || len(first) != 2 || first[1].ID != 2 || len(rest) != 1 || rest[0].ID != 1 || last != "" {
			t.Fatalf("%+v %+v %q", first, rest, last)
		}
	})
	t.Run("ErrCursor", func(t *testing.T) {
		if _, _, err := db.BatchList(ctx, view.BatchFilter{After: "!!"}); notify.ErrorCode(err) != notify.EINVALID {
			t.Fatal(err)
		}
	})
}

// TestConsole_Plans checks that the console's reads are index scans on a
// filled inbox (20000 notifications over 30 days, analyzed): the pages
// must answer in milliseconds on a million (deploy/dev/bench-console.sh
// measures that).
func TestConsole_Plans(t *testing.T) {
	t.Parallel()
	db := pgtest.New(t)
	ctx := context.Background()
	_, err := db.Pool.Exec(ctx, `
        INSERT INTO notifications (app_id, notify_id, msg_method, utc_timestamp, biz_content, params, channel, content_form,
            status, received_at, last_received_at, processed_at)
        SELECT 'app', 'plan-' || g, 'alipay.open.mini.version.audit.passed', g, '{}', '{}', 'http', 'v1',
            CASE WHEN g % 100 = 0 THEN 'failed' WHEN g % 50 = 0 THEN 'stale' ELSE 'applied' END, t, t, t
        FROM generate_series(1, 20000) g, LATERAL (SELECT now() - g * interval '2 minutes' AS t) x;
        INSERT INTO authorizations (app_id, auth_app_id, status, event_at, event_notify_id)
        SELECT 'app', '2021' || lpad(g::text, 12, '0'), 'authorized', g, 'plan-' || g FROM generate_series(1, 5000) g;
        INSERT INTO mini_app_orders (order_no, app_id, kind, mini_app_id, pid, event_at, event_notify_id)
        SELECT 'o' || g, 'app', 'merchant_confirmed', '2021' || lpad(g::text, 12, '0'), '2088' || g, g, 'plan-' || g FROM generate_series(1, 5000) g;
        INSERT INTO events (app_id, notify_id, type, data)
        SELECT 'app', 'plan-' || g, CASE WHEN g % 10 = 0 THEN 'authorization.granted' ELSE 'notification.received' END,
            jsonb_build_object('auth_app_id', '2021' || lpad(g::text, 12, '0')) FROM generate_series(1, 20000) g;
        INSERT INTO reconcile_drift (run_id, app_id, auth_app_id, mini_app_id, kind, entity, field, after, observed_at, notify_id, created_at)
        SELECT g / 100, 'app', '2021' || lpad((g % 5000)::text, 12, '0'), CASE WHEN g % 2 = 0 THEN '2021' || lpad((g % 5000)::text, 12, '0') ELSE '' END,
            CASE WHEN g % 2 = 0 THEN 'mini_app_version' ELSE 'authorization' END, 'e' || g, 'status', 'x', now(), 'reconcile:' || g,
            now() - (20000 - g) * interval '3 minutes'
        FROM generate_series(1, 20000) g;
        INSERT INTO reconcile_errors (run_id, app_id, auth_app_id, kind, at)
        SELECT g / 100, 'app', '2021' || lpad((g % 5000)::text, 12, '0'), 'upstream', now() - (20000 - g) * interval '3 minutes'
        FROM generate_series(1, 20000) g;
        INSERT INTO template_message_batches (app_id, request_hash, user_template_id, page, total, status)
        SELECT 'app', 'h' || b, 't', 'p', 10, CASE WHEN b > 1990 THEN 'running' ELSE 'finished' END FROM generate_series(1, 2000) b;
        INSERT INTO template_message_recipients (batch_id, seq, to_user_id, status)
        SELECT b, g, '2088' || g, CASE WHEN b > 1990 THEN 'pending' WHEN g = 7 THEN 'unknown' ELSE 'sent' END
        FROM generate_series(1, 2000) b, generate_series(1, 10) g;
        INSERT INTO template_message_batches (app_id, request_hash, user_template_id, page, total, status)
        VALUES ('app', 'big', 't', 'p', 20000, 'finished');
        INSERT INTO template_message_recipients (batch_id, seq, to_user_id, status)
        SELECT 2001, g, '2088' || g, CASE WHEN g % 1000 = 0 THEN 'unknown' ELSE 'sent' END FROM generate_series(1, 20000) g`)
	if err == nil {
		_, err = db.Pool.Exec(ctx, `VACUUM ANALYZE notifications, authorizations, mini_app_orders, events, reconcile_drift, reconcile_errors,
            template_message_batches, template_message_recipients`)
	}
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	for name, tc := range map[string]struct {
		sql  string
		args []any
	}{
		"IntakeDay":             {postgres.IntakeCountsSQL, []any{now, time.Hour, 24}},
		"MerchantPrefix":        {postgres.MerchantsSQL, []any{"", "20210000001", "", false, nil, nil, "", "", 51}},
		"MerchantOrders":        {postgres.OrdersOfSQL, []any{[]string{"202100000000042"}, []string{"208842"}, 50}},
		"MerchantNotifications": {postgres.MerchantNotificationsSQL, []any{"202100000000042", []string{"202100000000042"}, []string{"o42"}, 20}},
		"ReconcileSummary":      {postgres.ReconcileSummarySQL, []any{now.Add(-24 * time.Hour)}},
		"Drift":                 {postgres.DriftSQL, []any{"", "", "", nil, 0, 51, 0}},
		"DriftPage":             {postgres.DriftSQL, []any{"", "", "", nil, 10000, 51, 0}},
		"DriftKind":             {postgres.DriftSQL, []any{"", "", "authorization", nil, 0, 51, 0}},
		"DriftMerchant":         {postgres.DriftSQL, []any{"202100000000042", "", "", nil, 0, 51, 0}},
		"DriftMiniApp":          {postgres.DriftSQL, []any{"", "202100000000042", "mini_app_version", nil, 0, 51, 0}},
		"DriftRun":              {postgres.DriftSQL, []any{"", "", "", nil, 0, 51, 42}},
		"BatchList":             {postgres.BatchListSQL, []any{"", "", 0, 51}},
		"BatchListPage":         {postgres.BatchListSQL, []any{"app", "finished", 1000, 51}},
		"BatchRecipients":       {postgres.BatchRecipientsSQL, []any{2001, "", 0, 51}},
		"BatchRecipientsStatus": {postgres.BatchRecipientsSQL, []any{2001, "unknown", 0, 51}},
	} {
		t.Run(name, func(t *testing.T) {
			rows, err := db.Pool.Query(ctx, "EXPLAIN "+tc.sql, append([]any{pgx.QueryExecModeExec}, tc.args...)...)
			if err != nil {
				t.Fatal(err)
			}
			plan, err := pgx.CollectRows(rows, pgx.RowTo[string])
			if err != nil {
				t.Fatal(err)
			}
			text := strings.Join(plan, "\n")
			t.Logf("%s:\n%s", name, text)
			if strings.HasPrefix(name, "BatchList") && strings.Contains(text, "Index Cond: (batch_id = b.id)") {
				t.Fatalf("counts a batch's recipients by reading all of them:\n%s", text)
			}
			if name == "BatchRecipientsStatus" && !strings.Contains(text, "template_message_recipients_status_idx") {
				t.Fatalf("lists a status by reading every recipient:\n%s", text)
			}
			for _, table := range []string{"notifications", "authorizations", "mini_app_orders", "events", "reconcile_drift", "reconcile_errors",
				"template_message_batches", "template_message_recipients"} {
				if strings.Contains(text, "Seq Scan on "+table) {
					t.Fatalf("scans %s:\n%s", table, text)
				}
			}
		})
	}
}
