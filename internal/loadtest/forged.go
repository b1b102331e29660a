package loadtest

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/url"
	"strings"

	"github.com/alipay-notify-gateway/gateway/internal/alipay"
)

// Forged requests, for measuring what a refusal costs the gateway: every
// one must be refused, and refusing it should cost no more than taking a
// genuine notification.
const (
	// forgedPadded is a body of about 60 KiB of empty parameters (thousands,
	// each of its own name) with an all-zero sign: sorting and hashing its
	// content forms once cost 58 times a small forged request.
	forgedPadded = "padded"
	// forgedSmall is a notification of the mix with random signature bytes.
	forgedSmall = "small"
	// forgedBig is a notification of the mix whose biz_content is padded to
	// about 60 KiB, with an all-zero sign: the biggest body the gateway
	// takes, refused only by the RSA operation.
	forgedBig = "big"
)

// ForgedKinds are the kinds of forged requests, in the order they are sent.
var ForgedKinds = []string{forgedPadded, forgedSmall, forgedBig}

// ParseForged parses -forged: kinds separated by commas.
func ParseForged(s string) ([]string, error) {
	if s == "" {
		return nil, nil
	}
	var out []string
	for _, k := range strings.Split(s, ",") {
		k = strings.TrimSpace(k)
		ok := false
		for _, known := range ForgedKinds {
			ok = ok || k == known
		}
		if !ok {
			return nil, fmt.Errorf("-forged: %q is none of %s", k, strings.Join(ForgedKinds, ", "))
		}
		out = append(out, k)
	}
	return out, nil
}

// forgedBodySize is about how big the padded and big bodies are: under the
// gateway's default MAX_BODY_BYTES (64 KiB).
const forgedBodySize = 60 << 10

// Forged returns forged request i of kind: never a genuine signature.
func (g *Generator) Forged(kind string, i int) ([]byte, error) {
	sigLen := g.Key.Size()
	switch kind {
	case forgedPadded:
		var b strings.Builder
		b.WriteString("app_id=" + g.AppID + "&notify_id=" + g.NotifyID(i) + "-forged&msg_method=alipay.open.mini.version.audit.passed" +
			"&sign_type=RSA2&utc_timestamp=1&sign=" + url.QueryEscape(base64.StdEncoding.EncodeToString(make([]byte, sigLen))))
		for i := 0; b.Len() < forgedBodySize; i++ {
			fmt.Fprintf(&b, "&e%d=", i) // distinct names: a name given twice is refused at once
		}
		return []byte(b.String()), nil
	case forgedSmall, forgedBig:
		f, err := g.Form(i)
		if err != nil {
			return nil, err
		}
		f[alipay.ParamNotifyID] += "-forged"
		sig := make([]byte, sigLen)
		if kind == forgedSmall {
			r := rand.New(rand.NewPCG(uint64(g.Seed), uint64(i)))
			for j := range sig {
				sig[j] = byte(r.Uint32())
			}
			sig[0] &= 0x7f // below the modulus: the RSA operation runs
		} else {
			var biz map[string]any
			if err := json.Unmarshal([]byte(f[alipay.ParamBizContent]), &biz); err != nil {
				return nil, err
			}
			biz["note"] = strings.Repeat("x", forgedBodySize-len(f.Encode()))
			b, _ := json.Marshal(biz)
			f[alipay.ParamBizContent] = string(b)
		}
		f[alipay.ParamSign] = base64.StdEncoding.EncodeToString(sig)
		return []byte(f.Encode()), nil
	}
	return nil, fmt.Errorf("unknown forged kind %q", kind)
}
