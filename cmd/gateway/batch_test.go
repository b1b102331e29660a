package main_test

import (
	"context"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/alipay-notify-gateway/gateway/internal/devpki"
	"github.com/alipay-notify-gateway/gateway/internal/openapisim"
	"github.com/alipay-notify-gateway/gateway/internal/pgtest"
	"github.com/alipay-notify-gateway/gateway/internal/postgres"
	"github.com/alipay-notify-gateway/gateway/internal/testkit"
)

// TestGateway_BatchKilled runs the real binary, posts a template message
// batch over the ops API, kills the gateway with SIGKILL once the
// simulator has received about half of it (with calls in flight:
// delivered, their answer not yet back), and starts another on the same
// database: once the dead one's claims expire they are unknown, the other
// sends the rest, and the batch finishes. No user gets the message twice,
// and every user the simulator delivered to is sent or unknown.
func TestGateway_BatchKilled(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	app := testkit.KeyApp()
	sim := openapisim.Start(openapisim.Config{Apps: []openapisim.App{testkit.SimApp(app)}, SignKey: testkit.AlipayKey()})
	defer sim.Close()
	// Every send is delivered at once and answered 300ms later: at 100 a
	// second, about 30 are in flight when the kill lands.
	sim.SetFailure(openapisim.MethodTemplateMessageSend, 1, openapisim.Fault{Deliver: true, Delay: 300 * time.Millisecond})
	dbURL := pgtest.NewSchema(t)
	db, err := postgres.Open(ctx, postgres.Config{URL: dbURL})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if err := db.Migrate(ctx); err != nil {
		t.Fatal(err)
	}

	dir := t.TempDir()
	keyFile := filepath.Join(dir, "app_private_key.pem")
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(testkit.AppKey())}), 0o600); err != nil {
		t.Fatal(err)
	}
	pub, _ := devpki.PublicKeyBase64(&testkit.AlipayKey().PublicKey)
	env := []string{"DATABASE_URL=" + dbURL, "LOG_LEVEL=info", "ALIPAY_APP_ID=" + app.ID, "ALIPAY_PUBLIC_KEY=" + pub,
		"ALIPAY_APP_PRIVATE_KEY_FILE=" + keyFile, "ALIPAY_GATEWAY_URL=" + sim.URL(), "TOKEN_ENCRYPTION_KEY=" + testkit.TokenKeyBase64,
		"OPS_API_TOKENS=ops-token", "RECONCILE_INTERVAL=0", "RECONCILE_AFTER_OUTAGE=0", "TEMPLATE_SEND_RATE=100"}
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
	call := func(method, url, body string, v any) int {
		t.Helper()
		req, _ := http.NewRequest(method, url, strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer ops-token")
		req.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		if v != nil {
			if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
				t.Fatal(err)
			}
		}
		return resp.StatusCode
	}

	const total = 600
	var b strings.Builder
	b.WriteString(`{"user_template_id":"tpl1","page":"pages/index","data":{"keyword1":{"value":"12:00"}},"recipients":[`)
	for i := range total {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, `{"to_user_id":"2088%012d"}`, i+1)
	}
	b.WriteString("]}")

	var logsA testkit.LogBuffer
	a, base := start(&logsA)
	var created struct{ ID int64 }
	if code := call("POST", base+"/v1/template-message-batches", b.String(), &created); code != 201 || created.ID == 0 {
		t.Fatalf("upload: %d %+v:\n%s", code, created, logsA.String())
	}
	if !testkit.Poll(30*time.Second, func() bool { return len(sim.Sent()) >= total/2 }) {
		t.Fatalf("%d sent:\n%s", len(sim.Sent()), logsA.String())
	}
	if err := a.Process.Kill(); err != nil { // SIGKILL: nothing runs after it
		t.Fatal(err)
	}
	_ = a.Wait()
	count := func(query string) (n int) {
		t.Helper()
		if err := db.Pool.QueryRow(ctx, query).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	atKill := len(sim.Sent())
	if n := count(`SELECT count(*) FROM template_message_recipients WHERE status = 'sending'`); n == 0 || atKill >= total {
		t.Fatalf("the kill did not land mid-batch: %d sending, %d delivered", n, atKill)
	}
	// The dead replica's claims run out (twice the call timeout and 30s,
	// 60s: here at once).
	if _, err := db.Pool.Exec(ctx, `UPDATE template_message_recipients SET claimed_at = now() - interval '1 hour' WHERE status = 'sending'`); err != nil {
		t.Fatal(err)
	}

	var logsB testkit.LogBuffer
	_, base = start(&logsB)
	var batch struct {
		Status string
		Counts struct{ Total, Pending, Sending, Sent, Failed, Skipped, Unknown, Cancelled int }
	}
	path := fmt.Sprintf("%s/v1/template-message-batches/%d", base, created.ID)
	if !testkit.Poll(30*time.Second, func() bool { call("GET", path, "", &batch); return batch.Status != "running" }) {
		t.Fatalf("the batch did not finish: %+v:\n%s", batch, logsB.String())
	}
	c := batch.Counts
	if batch.Status != "finished" || c.Total != total || c.Pending != 0 || c.Sending != 0 || c.Sent+c.Unknown+c.Failed != total || c.Unknown == 0 {
		t.Fatalf("%+v", batch)
	}

	// No user twice; every delivered user sent or unknown, every sent one
	// delivered.
	delivered := map[string]bool{}
	for _, m := range sim.Sent() {
		if delivered[m.ToUserID] {
			t.Errorf("%s got it twice", m.ToUserID)
		}
		delivered[m.ToUserID] = true
	}
	rows, err := db.Pool.Query(ctx, `SELECT to_user_id, status FROM template_message_recipients WHERE batch_id = $1`, created.ID)
	if err != nil {
		t.Fatal(err)
	}
	status := map[string]string{}
	for rows.Next() {
		var id, s string
		if err := rows.Scan(&id, &s); err != nil {
			t.Fatal(err)
		}
		status[id] = s
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	unknownDelivered := 0
	for id := range delivered {
		switch status[id] {
		case "sent":
		case "unknown":
			unknownDelivered++
		default:
			t.Errorf("%s delivered but %q", id, status[id])
		}
	}
	for id, s := range status {
		if s == "sent" && !delivered[id] {
			t.Errorf("%s sent but not delivered", id)
		}
	}
	if c.Sent != len(delivered)-unknownDelivered {
		t.Errorf("%d sent; want %d delivered less %d unknown", c.Sent, len(delivered), unknownDelivered)
	}

	// Its event, once.
	var page struct {
		Items []struct {
			NotifyID string `json:"notify_id"`
			Data     struct {
				Status string
				Counts struct{ Sent, Unknown int }
			}
		}
	}
	if code := call("GET", base+"/v1/events?type=template_message_batch.finished", "", &page); code != 200 || len(page.Items) != 1 ||
		page.Items[0].NotifyID != fmt.Sprintf("template_message_batch:%d", created.ID) || page.Items[0].Data.Status != "finished" ||
		page.Items[0].Data.Counts.Sent != c.Sent || page.Items[0].Data.Counts.Unknown != c.Unknown {
		t.Fatalf("%d %+v", code, page)
	}
	t.Logf("delivered %d at the kill, %d in all; %d sent, %d unknown (%d of them delivered)", atKill, len(delivered), c.Sent, c.Unknown, unknownDelivered)
}
