// Package testkit is the tests' fixtures, in one place: the test apps and
// their ids, the keys and the PKI (made once per test binary, and only when
// a test asks for them: RSA key generation is slow), notification forms and
// their signatures, notifications as the verifier hands them over and as
// the registry decides them, the token sealer, and small helpers (a log
// buffer, Eventually and Poll, Concurrently, unique ids).
//
// It is a normal package so that every package's tests can share it, but
// only _test.go files import it: nothing the gateway runs depends on it.
// It holds no database: internal/pgtest is the Postgres part of the kit
// (a migrated schema per test, a proxy to take the database away).
//
// # The test apps
//
//	AppID       public-key mode: notifications signed with AlipayKey; its own key AppKey
//	CertAppID   certificate mode: PKI's Alipay and Rotated certs live; its own key and cert PKI().App
//	OtherAppID  a second public-key mode app (the same keys as AppID), for tests across apps
//
// MerchantAppID is a merchant's app (auth_app_id) that authorizes them.
// OtherKey is trusted by no app: it signs forgeries.
package testkit
