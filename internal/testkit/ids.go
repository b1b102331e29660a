package testkit

// The test ids. AppID is the samples' own app_id (internal/samples), so a
// sample is a notification for it as it is; MerchantAppID and UserID are
// the samples' auth_app_id and user_id.
const (
	// AppID is the ISV app of public-key mode.
	AppID = "2013121700999429"
	// CertAppID is the ISV app of certificate mode: PKI is made for it
	// (its App cert is appCertPublicKey_<CertAppID>.crt).
	CertAppID = "2021000000000002"
	// OtherAppID is a second ISV app in public-key mode, with AppID's keys,
	// for what one app must not see or change of another's.
	OtherAppID = "2021000000000003"
	// MerchantAppID is a merchant's app (auth_app_id) that authorizes the
	// ISV apps: the samples' grant and cancellation are of it.
	MerchantAppID = "2013072300101234"
	// UserID is the merchant's Alipay user (user_id) in the samples.
	UserID = "2088100000034011"
)

// The token keys (TOKEN_ENCRYPTION_KEY). Sealer seals with TokenKey;
// OtherTokenKey is a second key, for rotations. Both are 32 bytes
// (AES-256); TokenKeyBase64 and OtherTokenKeyBase64 are the same keys as
// the gateway's environment takes them.
var (
	TokenKey      = []byte("0123456789abcdef0123456789abcdef")
	OtherTokenKey = []byte("fedcba9876543210fedcba9876543210")
)

// The token keys in base64, as TOKEN_ENCRYPTION_KEY takes them.
const (
	TokenKeyBase64      = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY="
	OtherTokenKeyBase64 = "ZmVkY2JhOTg3NjU0MzIxMGZlZGNiYTk4NzY1NDMyMTA="
)
