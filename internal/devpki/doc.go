// Package devpki generates throw-away RSA keys and an X.509 PKI shaped like
// Alipay's, for tests, local development (make run) and the alipayctl
// keys/certs commands.
//
// Nothing produced here is meant for production: keys are generated fresh on
// every call, are never protected by a passphrase, and certificates carry
// "Test" subject names.
//
// # Keys
//
// Alipay and its SDKs exchange RSA keys in several encodings. The helpers in
// this package produce each of them from an *rsa.PrivateKey:
//
//   - PublicKeyBase64: the bare base64 of the PKIX SubjectPublicKeyInfo DER,
//     on one line, as the Alipay open platform console displays "支付宝公钥".
//   - PublicKeyPEM: the same DER in a "PUBLIC KEY" PEM block.
//   - PrivateKeyPKCS8Base64 / PrivateKeyPKCS1Base64: bare base64 on one line,
//     as Alipay's key generation tool writes them (PKCS#8 is the Java form).
//   - PrivateKeyPKCS8PEM / PrivateKeyPKCS1PEM: "PRIVATE KEY" and
//     "RSA PRIVATE KEY" PEM blocks.
//
// ParsePrivateKey reads any of those private key forms back.
//
// # Signatures
//
// SignRSA2 signs like Alipay does for sign_type=RSA2 (SHA256withRSA,
// PKCS#1 v1.5, base64). SignRSA1 produces the legacy SHA1withRSA form, which
// is only useful for negative tests.
//
// # PKI
//
// NewPKI builds a certificate hierarchy modelled on Alipay's certificate
// mode:
//
//	ECRoot   (ECDSA P-384, self-signed, ecdsa-with-SHA384)  ┐
//	Root     (RSA, self-signed, sha256WithRSA)              ├ RootBundlePEM
//	SHA1Root (RSA, self-signed, sha1WithRSA)                ┘
//	Root
//	└── Intermediate (CA)
//	    ├── Alipay   (Alipay's notification signing cert)
//	    ├── Rotated  (a second Alipay signing cert with a new key)
//	    ├── Expired  (an Alipay signing cert whose validity has ended)
//	    └── App      (the ISV application's own cert)
//
//	rogue root (not in the bundle)
//	└── rogue intermediate
//	    └── Rogue
//
// The rogue root and intermediate copy the subject names of Root and
// Intermediate exactly, so Rogue can only be told apart from a genuine
// certificate by checking signatures, which is what an attacker's chain
// would look like.
//
// PKI.WriteDir writes the hierarchy with the file names Alipay uses
// (alipayRootCert.crt, alipayCertPublicKey_RSA2.crt,
// appCertPublicKey_<appid>.crt) plus a few extra certificates and the
// private keys needed to sign test notifications.
package devpki
