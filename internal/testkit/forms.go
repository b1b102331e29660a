package testkit

import (
	"crypto"
	"crypto/rsa"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/alipay-notify-gateway/gateway/internal/alipay"
	"github.com/alipay-notify-gateway/gateway/internal/samples"
)

var seq atomic.Int64

// UniqueID returns prefix followed by a number no other call in this test
// binary, nor in an earlier run on the same database, returns: a notify_id
// (it has a notify_id's shape when prefix has), an idempotency key.
func UniqueID(prefix string) string {
	return fmt.Sprintf("%s-%d-%d", prefix, time.Now().UnixNano(), seq.Add(1))
}

// Sample returns the named sample's form (internal/samples), unsigned, for
// app, with a fresh notify_id.
func Sample(t testing.TB, name, app string) alipay.Form {
	t.Helper()
	s, ok := samples.Get(name)
	if !ok {
		t.Fatalf("testkit: no sample %s", name)
	}
	f := alipay.Form(s.Form)
	f["app_id"] = app
	f["notify_id"] = UniqueID(name)
	return f
}

// Form returns a minimal notification for app, unsigned: method with biz
// at ts (utc_timestamp, ms), with a fresh notify_id.
func Form(app, method, biz string, ts int64) alipay.Form {
	return alipay.Form{
		"charset": "UTF-8", "biz_content": biz, "msg_method": method, "version": "1.1", "sign_type": "RSA2",
		"utc_timestamp": fmt.Sprint(ts), "notify_id": UniqueID("n"), "app_id": app,
	}
}

// Sign returns f signed with key as Alipay signs (sign_type RSA2:
// SHA256withRSA) over the content form: V1 leaves sign_type out of the
// signed content, V2 keeps it, the cert SN forms keep alipay_cert_sn. It
// does not change f.
func Sign(t testing.TB, f alipay.Form, key *rsa.PrivateKey, form alipay.ContentForm) alipay.Form {
	t.Helper()
	return sign(t, f, key, form, crypto.SHA256)
}

// SignSHA1 is Sign with the legacy hash of sign_type RSA (SHA1withRSA).
func SignSHA1(t testing.TB, f alipay.Form, key *rsa.PrivateKey, form alipay.ContentForm) alipay.Form {
	t.Helper()
	return sign(t, f, key, form, crypto.SHA1)
}

func sign(t testing.TB, f alipay.Form, key *rsa.PrivateKey, form alipay.ContentForm, hash crypto.Hash) alipay.Form {
	t.Helper()
	s, err := alipay.Sign(f, key, form, hash)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// Body returns f signed with key as Alipay signs most notifications (V1,
// SHA256withRSA), encoded as the body of a POST.
func Body(t testing.TB, f alipay.Form, key *rsa.PrivateKey) string {
	t.Helper()
	return Sign(t, f, key, alipay.FormV1).Encode()
}
