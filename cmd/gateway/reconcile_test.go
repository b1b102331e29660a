package main_test

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/alipay-notify-gateway/gateway/internal/alipay"
	"github.com/alipay-notify-gateway/gateway/internal/devpki"
	"github.com/alipay-notify-gateway/gateway/internal/notify"
	"github.com/alipay-notify-gateway/gateway/internal/openapisim"
	"github.com/alipay-notify-gateway/gateway/internal/outbound"
	"github.com/alipay-notify-gateway/gateway/internal/pgtest"
	"github.com/alipay-notify-gateway/gateway/internal/postgres"
	"github.com/alipay-notify-gateway/gateway/internal/testkit"
)

// TestGateway_ReconcileKilled runs the real binary, starts a reconciliation
// run over the ops API, kills the gateway with SIGKILL in the middle of a
// merchant (one repair made, a query unanswered), and starts another: it
// resumes the run once the dead one's lease is over, and finishes it
// without repairing anything twice.
func TestGateway_ReconcileKilled(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	app := testkit.KeyApp()
	sim := openapisim.Start(openapisim.Config{Apps: []openapisim.App{testkit.SimApp(app)}, SignKey: testkit.AlipayKey()})
	defer sim.Close()
	dbURL := pgtest.NewSchema(t)
	db, err := postgres.Open(ctx, postgres.Config{URL: dbURL})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if err := db.Migrate(ctx); err != nil {
		t.Fatal(err)
	}

	// The merchant authorizes the ISV app; its 1.0.0 audit notification
	// arrives, then both versions are rejected and neither rejection's
	// notification arrives.
	const merchant = "2021000000000701"
	svc, err := outbound.New(outbound.Config{Apps: []*alipay.App{app}, GatewayURL: sim.URL(), Store: db, Sealer: testkit.Sealer(t), Logger: testkit.Logger(t)})
	if err != nil {
		t.Fatal(err)
	}
	link, _ := svc.AuthorizationLink(outbound.LinkRequest{RedirectURI: "https://gw.example.com/alipay/auth/callback"})
	if _, err := svc.CompleteAuthorization(ctx, outbound.Callback{Code: sim.IssueCode(app.ID, merchant, "2088000000000701"), State: link.State}); err != nil {
		t.Fatal(err)
	}
	n := testkit.Note(notify.MethodAuditPassed, `{"mini_app_id":"`+merchant+`","mini_app_version":"1.0.0"}`, time.Now().Add(-time.Hour).UnixMilli())
	if _, err := db.Ingest(ctx, testkit.Decide(t, n)); err != nil {
		t.Fatal(err)
	}
	sim.SetVersion(merchant, openapisim.Version{Version: "1.0.0", Status: "AUDIT_REJECT"})
	sim.SetVersion(merchant, openapisim.Version{Version: "1.1.0", Status: "AUDIT_REJECT"})
	sim.Fail(openapisim.MethodMiniVersionDetail, openapisim.Fault{})           // 1.0.0: answered
	sim.Fail(openapisim.MethodMiniVersionDetail, openapisim.Fault{Hang: true}) // 1.1.0: never

	dir := t.TempDir()
	keyFile := filepath.Join(dir, "app_private_key.pem")
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(testkit.AppKey())}), 0o600); err != nil {
		t.Fatal(err)
	}
	pub, _ := devpki.PublicKeyBase64(&testkit.AlipayKey().PublicKey)
	env := []string{"DATABASE_URL=" + dbURL, "LOG_LEVEL=info", "ALIPAY_APP_ID=" + app.ID, "ALIPAY_PUBLIC_KEY=" + pub,
		"ALIPAY_APP_PRIVATE_KEY_FILE=" + keyFile, "ALIPAY_GATEWAY_URL=" + sim.URL(), "TOKEN_ENCRYPTION_KEY=" + testkit.TokenKeyBase64,
		"OPS_API_TOKENS=ops-token", "RECONCILE_INTERVAL=0", "RECONCILE_AFTER_OUTAGE=0", "RECONCILE_RATE=0"}
	start := func(logs *testkit.LogBuffer) (*exec.Cmd, string) {
		addr := freeAddr(t)
		cmd := exec.Command(gatewayBinary(t))
		cmd.Env = append(env, "HTTP_ADDR="+addr)
		cmd.Stdout, cmd.Stderr = logs, logs
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
		waitReady(t, "http://"+addr, logs)
		return cmd, "http://" + addr
	}

	var logsA testkit.LogBuffer
	a, base := start(&logsA)
	req, _ := http.NewRequest("POST", base+"/v1/reconcile-runs", strings.NewReader(`{"scope": "all"}`))
	req.Header.Set("Authorization", "Bearer ops-token")
	resp, err := http.DefaultClient.Do(req)
	if err != nil || resp.StatusCode != 202 {
		t.Fatalf("%v %v", resp, err)
	}
	resp.Body.Close()
	if !testkit.Poll(20*time.Second, func() bool { return len(sim.Calls(openapisim.MethodMiniVersionDetail)) == 2 }) {
		t.Fatalf("the second detail query never came:\n%s", logsA.String())
	}
	if err := a.Process.Kill(); err != nil { // SIGKILL: nothing runs after it
		t.Fatal(err)
	}
	_ = a.Wait()
	count := func(query string) (n int) {
		if err := db.Pool.QueryRow(ctx, query).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	if count(`SELECT count(*) FROM reconcile_drift`) != 1 || count(`SELECT count(*) FROM reconcile_runs WHERE status = 'running'`) != 1 {
		t.Fatalf("before the restart: %d drift, %d running", count(`SELECT count(*) FROM reconcile_drift`), count(`SELECT count(*) FROM reconcile_runs WHERE status = 'running'`))
	}
	// The dead replica's leases, of the target and of the merchant, run
	// out (2 minutes; here at once).
	for _, table := range []string{"reconcile_targets", "reconcile_leases"} {
		if _, err := db.Pool.Exec(ctx, `UPDATE `+table+` SET lease_until = now()`); err != nil {
			t.Fatal(err)
		}
	}

	var logsB testkit.LogBuffer
	start(&logsB)
	if !testkit.Poll(30*time.Second, func() bool { return count(`SELECT count(*) FROM reconcile_runs WHERE status = 'finished'`) == 1 }) {
		t.Fatalf("the run was not resumed:\n%s", logsB.String())
	}
	for what, want := range map[string]int{
		`SELECT count(*) FROM reconcile_drift`:                                                                                   2,
		`SELECT count(*) FROM events WHERE notify_id LIKE 'reconcile:%'`:                                                         2,
		`SELECT count(*) FROM mini_app_versions WHERE audit_status = 'audit_rejected'`:                                           2,
		`SELECT count(*) FROM mini_app_audit_events WHERE msg_method = 'reconcile'`:                                              2,
		`SELECT repaired FROM reconcile_runs`:                                                                                    2,
		fmt.Sprintf(`SELECT count(*) FROM authorizations WHERE auth_app_id = '%s' AND last_reconciled_at IS NOT NULL`, merchant): 1,
	} {
		if got := count(what); got != want {
			t.Errorf("%s: %d; want %d", what, got, want)
		}
	}
}
