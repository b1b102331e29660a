package main

import (
	"context"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/alipay-notify-gateway/gateway/internal/httpapi"
	"github.com/alipay-notify-gateway/gateway/internal/notify"
	"github.com/alipay-notify-gateway/gateway/internal/pgtest"
	"github.com/alipay-notify-gateway/gateway/internal/testkit"
	"github.com/alipay-notify-gateway/gateway/internal/webhook"
)

// TestListen_Gateway runs listen against the gateway's own ops API and
// dispatcher on a real database: it registers, an applied notification's
// events reach it signed and verified, and it deletes its endpoint on
// exit.
func TestListen_Gateway(t *testing.T) {
	t.Parallel()
	db := pgtest.New(t)
	ops := httptest.NewServer(httpapi.New(httpapi.Config{
		Store: db, Webhooks: &webhook.Admin{AdminStore: db}, Tokens: []string{"ops-token"}, Logger: zerolog.Nop(),
	}))
	defer ops.Close()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		webhook.New(webhook.Config{Store: db, Logger: zerolog.Nop(), Poll: 20 * time.Millisecond, Refresh: 50 * time.Millisecond}).Run(ctx)
	}()
	defer func() { cancel(); <-done }()

	r := startListen(t, "--gateway", ops.URL, "--token", "ops-token", "--events", "mini_app.*", "--print-json")
	biz := `{"mini_app_id":"listen-1","mini_app_version":"1.0.0"}`
	d, err := testkit.Registry(t).Decide(&notify.Notification{
		AppID: "2021000000000001", NotifyID: "listen-n1", Method: notify.MethodAuditPassed, UTCTimestamp: time.Now().UnixMilli(),
		BizContent: biz, Params: map[string]string{"biz_content": biz}, Channel: notify.ChannelHTTP, ContentForm: "v1", ReceivedAt: time.Now(),
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.Ingest(ctx, d); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(r.stdout.String(), "listen-1") {
		if time.Now().After(deadline) {
			t.Fatalf("no event printed:\n%s\n%s", r.stdout, r.stderr)
		}
		time.Sleep(20 * time.Millisecond)
	}
	lineWith(t, r.stdout.String(), notify.EventMiniAppAuditPassed, "listen-n1")
	if strings.Contains(r.stdout.String(), notify.EventNotificationReceived) {
		t.Fatalf("an event its filter leaves out:\n%s", r.stdout)
	}
	if err := r.stop(); err != nil {
		t.Fatal(err)
	}
	eps, err := db.Endpoints(context.Background(), false)
	if err != nil || len(eps) != 0 {
		t.Fatalf("the endpoint is left: %v %v", eps, err)
	}
}
