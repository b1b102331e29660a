package testkit

import (
	"crypto/rsa"
	"sync"

	"github.com/alipay-notify-gateway/gateway/internal/alipay"
	"github.com/alipay-notify-gateway/gateway/internal/devpki"
)

// Each key, and the PKI, is made the first time a test asks for it, and
// then shared by every test of the binary.
var (
	alipayKey = sync.OnceValue(devpki.MustNewKey)
	otherKey  = sync.OnceValue(devpki.MustNewKey)
	appKey    = sync.OnceValue(devpki.MustNewKey)
	pki       = sync.OnceValue(func() *devpki.PKI { return devpki.MustNewPKI(CertAppID) })
	rootSN    = sync.OnceValue(func() string {
		roots, err := alipay.ParseRootBundle(PKI().RootBundlePEM)
		if err != nil {
			panic("testkit: the PKI's root bundle: " + err.Error())
		}
		return roots.SN
	})
)

// AlipayKey is Alipay's key in public-key mode (its public half is the
// "支付宝公钥" of AppID and OtherAppID): it signs their notifications, and
// the simulators' answers and messages.
func AlipayKey() *rsa.PrivateKey { return alipayKey() }

// OtherKey is a key no app trusts: what a forger signs with.
func OtherKey() *rsa.PrivateKey { return otherKey() }

// AppKey is the ISV app's own private key in public-key mode (AppID's and
// OtherAppID's): it signs outbound OpenAPI calls and the WebSocket
// channel's register and connect.
func AppKey() *rsa.PrivateKey { return appKey() }

// PKI is the certificate mode PKI (internal/devpki), made for CertAppID:
// its Alipay and Rotated certs sign CertAppID's notifications, its App
// cert and key are CertAppID's own; Expired and Rogue are refused.
func PKI() *devpki.PKI { return pki() }

// RootCertSN is the SN of PKI's root bundle (alipay_root_cert_sn).
func RootCertSN() string { return rootSN() }
