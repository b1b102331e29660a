package loadtest

import (
	"crypto"
	"crypto/rsa"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"hash/fnv"
	"math/rand/v2"
	"strconv"
	"strings"
	"time"

	"github.com/alipay-notify-gateway/gateway/internal/alipay"
	"github.com/alipay-notify-gateway/gateway/internal/samples"
)

// Generator makes a run's notifications. The i-th body is a pure function
// of the Generator's fields and i (RSA PKCS#1 v1.5 signatures are
// deterministic), so two processes given the same flags send byte-identical
// notifications: a resend, or the same load against two replicas.
type Generator struct {
	AppID  string
	Prefix string // notify_id is Prefix-0000000, Prefix-0000001, ...
	Seed   int64  // picks the methods and the random values
	TSBase int64  // utc_timestamp of notification 0, in ms; notification i has TSBase+i
	// Entities is how many distinct mini-apps, orders and authorizing apps
	// the notifications are about: notification i is about entity
	// i % Entities, and entity ids depend on Seed only (not on Prefix).
	Entities int
	Mix      []samples.Sample // the samples to pick from, uniformly
	Key      *rsa.PrivateKey  // the "Alipay" private key
}

// NotifyID returns the notify_id of notification i.
func (g *Generator) NotifyID(i int) string { return fmt.Sprintf("%s-%07d", g.Prefix, i) }

// Method returns the method (msg_method, or notify_type) of notification i.
func (g *Generator) Method(i int) string { return g.sample(g.rng(i)).Method }

func (g *Generator) rng(i int) *rand.Rand {
	return rand.New(rand.NewPCG(uint64(g.Seed), uint64(i)))
}

func (g *Generator) sample(r *rand.Rand) samples.Sample {
	return g.Mix[r.IntN(len(g.Mix))]
}

// Form returns notification i, unsigned: a sample of the mix with its ids,
// timestamps and biz_content values made its own.
func (g *Generator) Form(i int) (alipay.Form, error) {
	r := g.rng(i)
	s := g.sample(r)
	f := copyForm(s.Form) // the mix's forms are shared: never change them
	e := i % max(g.Entities, 1)
	ts := g.TSBase + int64(i)
	f[alipay.ParamAppID] = g.AppID
	f[alipay.ParamNotifyID] = g.NotifyID(i)

	var biz map[string]any
	if err := json.Unmarshal([]byte(f[alipay.ParamBizContent]), &biz); err != nil {
		return nil, fmt.Errorf("sample %s: biz_content: %v", s.Name, err)
	}
	miniAppID, authAppID := g.id("mini_app", e, "20", 14), g.id("auth_app", e, "20", 14)
	orderNo := g.id("order", e, "", 16)
	// Alipay's statuses as they come, random per notification.
	pick := func(vs ...string) string { return vs[r.IntN(len(vs))] }
	switch s.Name {
	case "appauth-cancelled":
		biz["app_id"], biz["auth_app_id"] = g.AppID, authAppID
		biz["user_id"] = g.id("user", e, "2088", 12)
		biz["app_auth_token"] = token(r, "BB")
	case "merchant-confirmed":
		biz["order_no"], biz["out_order_no"] = orderNo, "ISV"+orderNo
		biz["min_app_id"] = miniAppID
		biz["status"] = pick("PROCESS", "SUCCESS", "FAIL")
		biz["pid"] = g.id("pid", e, "2088", 12)
	case "fastregister-changed":
		biz["order_no"], biz["out_order_no"] = orderNo, "ISV"+orderNo
		biz["merchant_app_id"] = miniAppID
		biz["status"] = pick("CREATE_MINI_APP_SUCCESS", "CREATE_MINI_APP_FAIL", "AUTH_SUCCESS", "WAIT_AUTH")
		biz["app_name"] = fmt.Sprintf("商户%d的试用小程序", e)
		biz["merchant_id"] = g.id("merchant", e, "2088", 20)
	case "audit-passed":
		biz["mini_app_id"] = miniAppID
	case "audit-rejected", "baseaudit-passed":
		biz["mini_app_id"] = miniAppID
		biz["mini_app_version"] = fmt.Sprintf("0.%d.%d", i/max(g.Entities, 1), r.IntN(10))
		biz["bundle_id"] = "com.isv.mini" + strconv.Itoa(e)
	case "auth-granted":
		d, _ := biz["detail"].(map[string]any)
		if d == nil {
			return nil, fmt.Errorf("sample %s: biz_content has no detail", s.Name)
		}
		d["app_id"], d["auth_app_id"] = g.AppID, authAppID
		d["user_id"] = g.id("user", e, "2088", 12)
		d["auth_time"] = ts
		d["app_auth_code"] = "P" + token(r, "")
		d["app_auth_token"], d["app_refresh_token"] = token(r, "BB"), token(r, "BB")
		f["auth_app_id"] = authAppID
		f[alipay.ParamNotifyTime] = time.UnixMilli(ts).In(alipay.ChinaTime).Format(time.DateTime)
	default:
		return nil, fmt.Errorf("sample %s: the load generator does not know it", s.Name)
	}
	if _, ok := f[alipay.ParamTimestamp]; ok {
		f[alipay.ParamTimestamp] = strconv.FormatInt(ts, 10)
	}
	b, err := json.Marshal(biz)
	if err != nil {
		return nil, err
	}
	f[alipay.ParamBizContent] = string(b)
	return f, nil
}

// Body returns notification i signed as Alipay signs (RSA2, the V1 content
// form) and form-encoded.
func (g *Generator) Body(i int) ([]byte, error) {
	f, err := g.Form(i)
	if err != nil {
		return nil, err
	}
	signed, err := alipay.Sign(f, g.Key, alipay.FormV1, crypto.SHA256)
	if err != nil {
		return nil, err
	}
	return []byte(signed.Encode()), nil
}

// id returns a stable identifier of entity e of kind: prefix then digits
// digits, derived from the seed, so that runs with the same seed (and
// different prefixes) talk about the same entities.
func (g *Generator) id(kind string, e int, prefix string, digits int) string {
	h := fnv.New64a()
	_ = binary.Write(h, binary.LittleEndian, g.Seed)
	_ = binary.Write(h, binary.LittleEndian, int64(e))
	h.Write([]byte(kind))
	r := rand.New(rand.NewPCG(h.Sum64(), 0x5eed))
	var b strings.Builder
	b.WriteString(prefix)
	for range digits {
		b.WriteByte(byte('0' + r.IntN(10)))
	}
	return b.String()
}

// token returns a random token shaped like Alipay's (e.g. 202301BB...).
func token(r *rand.Rand, infix string) string {
	const hex = "0123456789abcdef"
	b := []byte("2023" + fmt.Sprintf("%02d", 1+r.IntN(12)) + infix)
	for range 32 {
		b = append(b, hex[r.IntN(16)])
	}
	return string(b) + "X01"
}

func copyForm(f map[string]string) alipay.Form {
	out := make(alipay.Form, len(f)+1)
	for k, v := range f {
		out[k] = v
	}
	return out
}

// MixOf returns the samples named in list (comma-separated; empty: all).
func MixOf(list string) ([]samples.Sample, error) {
	if strings.TrimSpace(list) == "" {
		return samples.All(), nil
	}
	var out []samples.Sample
	for _, name := range strings.Split(list, ",") {
		s, ok := samples.Get(strings.TrimSpace(name))
		if !ok {
			return nil, fmt.Errorf("-mix: unknown sample %q (known: %s)", name, strings.Join(samples.Names(), ", "))
		}
		out = append(out, s)
	}
	return out, nil
}
