package redact_test

import (
	"strings"
	"testing"

	"github.com/alipay-notify-gateway/gateway/internal/redact"
)

func TestSecrets(t *testing.T) {
	t.Parallel()
	t.Run("OK", func(t *testing.T) {
		biz, secrets := redact.Secrets(`{"detail":{"app_auth_token":"t1","app_refresh_token":"r1","list":[{"app_auth_code":"c1"}]},"x":"云"}`)
		if strings.Contains(biz, "t1") || strings.Contains(biz, "r1") || strings.Contains(biz, "c1") || !strings.Contains(biz, "云") {
			t.Fatalf("%s", biz)
		}
		if secrets["app_auth_token"] != "t1" || secrets["app_refresh_token"] != "r1" || secrets["app_auth_code"] != "c1" {
			t.Fatalf("%v", secrets)
		}
	})
	for name, in := range map[string]string{"NoSecret": `{"a":1}`, "NotJSON": `app_auth_token=x`, "NotAString": `{"app_auth_token":5}`} {
		t.Run(name, func(t *testing.T) {
			if out, secrets := redact.Secrets(in); out != in || secrets != nil {
				t.Fatalf("%q %v", out, secrets)
			}
		})
	}
}
