package testkit

import (
	"strconv"
	"testing"
	"time"

	"github.com/alipay-notify-gateway/gateway/internal/alipay"
	"github.com/alipay-notify-gateway/gateway/internal/notify"
	"github.com/alipay-notify-gateway/gateway/internal/redact"
	"github.com/alipay-notify-gateway/gateway/internal/seal"
)

// Note returns a notification for AppID of method with biz at ts (ms), as
// the verifier hands it over (see NoteOf): the notification of Form(AppID,
// method, biz, ts). Set its AppID for another app.
func Note(method, biz string, ts int64) *notify.Notification {
	return NoteOf(Form(AppID, method, biz, ts))
}

// SampleNote returns the named sample for AppID, with a fresh notify_id, as
// the verifier hands it over.
func SampleNote(t testing.TB, name string) *notify.Notification {
	t.Helper()
	return NoteOf(Sample(t, name, AppID))
}

// NoteOf returns the notification the verifier hands over for the form f
// once its signature verifies, over HTTP, in content form V1, received now:
// the secrets (tokens) taken out of biz_content into Secrets, the
// parameters kept with biz_content redacted, utc_timestamp (or for the
// older style notify_time) as UTCTimestamp. It has no content digest.
func NoteOf(f alipay.Form) *notify.Notification {
	biz, secrets := redact.Secrets(f["biz_content"])
	params := make(map[string]string, len(f))
	for k, v := range f {
		params[k] = v
	}
	params["biz_content"] = biz
	method := f["msg_method"]
	if method == "" {
		method = f["notify_type"]
	}
	ts, _ := strconv.ParseInt(f["utc_timestamp"], 10, 64)
	if at, err := time.ParseInLocation(time.DateTime, f["notify_time"], alipay.ChinaTime); ts == 0 && err == nil {
		ts = at.UnixMilli()
	}
	return &notify.Notification{
		AppID: f["app_id"], NotifyID: f["notify_id"], Method: method, UTCTimestamp: ts,
		BizContent: biz, Secrets: secrets, Params: params,
		Channel: notify.ChannelHTTP, ContentForm: "v1", ReceivedAt: time.Now(),
	}
}

// Sealer returns the token sealer of TokenKey.
func Sealer(t testing.TB) *seal.Sealer {
	t.Helper()
	return SealerOf(t, TokenKey)
}

// SealerOf returns a token sealer that seals with current and opens with
// old too (a key rotation).
func SealerOf(t testing.TB, current []byte, old ...[]byte) *seal.Sealer {
	t.Helper()
	s, err := seal.New(current, old...)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// Registry returns the registry of every handler, sealing with Sealer.
func Registry(t testing.TB) *notify.Registry {
	t.Helper()
	return notify.NewRegistry(notify.RegistryConfig{Sealer: Sealer(t)})
}

// Decide returns what Registry decides of n, ready to store; a refusal
// fails t.
func Decide(t testing.TB, n *notify.Notification) notify.Decided {
	t.Helper()
	d, err := Registry(t).Decide(n)
	if err != nil {
		t.Fatalf("testkit: decide %s: %v", n.NotifyID, err)
	}
	return d
}
