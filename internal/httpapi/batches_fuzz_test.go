package httpapi

import (
	"bytes"
	"testing"

	"github.com/alipay-notify-gateway/gateway/internal/notify"
)

// FuzzReadBatchCSV: whatever the bytes of an uploaded CSV, reading it never
// panics (a quote error once did, in FieldPos), and it either gives
// recipients of the upload's own rows or an EINVALID *notify.Error for a
// clear 400.
func FuzzReadBatchCSV(f *testing.F) {
	for _, seed := range []string{
		"to_user_id\n2088000000000001\n",
		"\ufeff\"to_user_id\",keyword1\r\n2088000000000001,\"a, b\"\r\n",
		"to_open_id,data\n074a1CcTG1Lel,\"{\"\"keyword1\"\":{\"\"value\"\":\"\"x\"\"}}\"\n",
		"to_user_id\n20880\"00\n",
		"to_user_id,to_user_id\n1,2\n",
		"to_user_id\n\"unclosed\n",
		"",
	} {
		f.Add([]byte(seed))
	}
	field := func(string) string { return "" }
	f.Fuzz(func(t *testing.T, body []byte) {
		req, err := readBatchCSV(bytes.NewReader(body), field)
		if err != nil {
			if notify.ErrorCode(err) != notify.EINVALID {
				t.Fatalf("error %v (%s), want EINVALID", err, notify.ErrorCode(err))
			}
			return
		}
		if lines := bytes.Count(body, []byte("\n")) + 1; len(req.Recipients) > lines {
			t.Fatalf("%d recipients from %d lines", len(req.Recipients), lines)
		}
	})
}
