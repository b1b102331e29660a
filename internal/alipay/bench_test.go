package alipay_test

import (
	"encoding/base64"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/alipay-notify-gateway/gateway/internal/alipay"
	"github.com/alipay-notify-gateway/gateway/internal/notify"
	"github.com/alipay-notify-gateway/gateway/internal/testkit"
)

// BenchmarkVerifier_Notification compares the whole intake check of genuine
// notifications with that of forged ones of the same sizes: a refusal
// should cost no more than an acceptance (make bench measures the same over
// HTTP, with the storage).
func BenchmarkVerifier_Notification(b *testing.B) {
	v := keyVerifier(b)
	big := func(f alipay.Form) alipay.Form {
		f["biz_content"] = `{"mini_app_id":"2014072300007148","note":"` + strings.Repeat("x", 60<<10) + `"}`
		return f
	}
	genuine := func(f alipay.Form) []byte {
		return []byte(testkit.Body(b, f, testkit.AlipayKey()))
	}
	forged := func(f alipay.Form) []byte {
		f["sign"] = base64.StdEncoding.EncodeToString(make([]byte, testkit.AlipayKey().Size()))
		return []byte(f.Encode())
	}
	var padded strings.Builder
	padded.WriteString(string(forged(baseForm(b))))
	for i := 0; padded.Len() < 60<<10; i++ {
		fmt.Fprintf(&padded, "&e%d=", i)
	}
	for _, c := range []struct {
		name string
		body []byte
		ok   bool
	}{
		{"GenuineSmall", genuine(baseForm(b)), true},
		{"GenuineBig", genuine(big(baseForm(b))), true},
		{"ForgedSmall", forged(baseForm(b)), false},
		{"ForgedBig", forged(big(baseForm(b))), false},
		{"ForgedPadded", []byte(padded.String()), false},
	} {
		b.Run(c.name, func(b *testing.B) {
			b.SetBytes(int64(len(c.body)))
			now := time.Now()
			for b.Loop() {
				_, _, err := v.Notification(c.body, notify.ChannelHTTP, now)
				if (err == nil) != c.ok {
					b.Fatal(err)
				}
			}
		})
	}
}
