package testkit

import (
	"testing"

	"github.com/alipay-notify-gateway/gateway/internal/alipay"
	"github.com/alipay-notify-gateway/gateway/internal/devpki"
	"github.com/alipay-notify-gateway/gateway/internal/openapisim"
)

// KeyApp returns AppID in public-key mode: Alipay's key AlipayKey, its own
// key AppKey. Each call returns a new App, for the caller to change.
func KeyApp() *alipay.App { return keyApp(AppID) }

// OtherApp returns OtherAppID, in public-key mode with AppID's keys.
func OtherApp() *alipay.App { return keyApp(OtherAppID) }

func keyApp(id string) *alipay.App {
	return &alipay.App{ID: id, Keys: []alipay.Key{{Pub: &AlipayKey().PublicKey}}, PrivateKey: AppKey()}
}

// CertApp returns CertAppID in certificate mode, with two live Alipay
// certs (PKI's Alipay and Rotated, as during a rotation; no validity
// bounds), and its own side: PKI's App key, its cert's SN and the root
// bundle's SN. Each call returns a new App.
func CertApp() *alipay.App {
	p := PKI()
	a := &alipay.App{ID: CertAppID, CertMode: true, PrivateKey: p.App.Key, AppCertSN: alipay.CertSN(p.App.Cert), RootCertSN: RootCertSN()}
	for _, c := range []devpki.Cert{p.Alipay, p.Rotated} {
		a.Keys = append(a.Keys, alipay.Key{SN: alipay.CertSN(c.Cert), Pub: &c.Key.PublicKey})
	}
	return a
}

// Verifier returns a Verifier of apps: KeyApp and CertApp when none are
// given.
func Verifier(t testing.TB, apps ...*alipay.App) *alipay.Verifier {
	t.Helper()
	if len(apps) == 0 {
		apps = []*alipay.App{KeyApp(), CertApp()}
	}
	v, err := alipay.NewVerifier(apps)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// SimApp returns the OpenAPI simulator's view of a (internal/openapisim):
// its own key's public half checks its calls, and in certificate mode the
// SNs they must carry.
func SimApp(a *alipay.App) openapisim.App {
	return openapisim.App{ID: a.ID, Pub: &a.PrivateKey.PublicKey, AppCertSN: a.AppCertSN, RootCertSN: a.RootCertSN}
}
