package diagnose

// Level is a finding's weight.
type Level string

// Finding levels: an error is a reason a notification is refused (or a
// setting the gateway refuses); a warning is wrong but handled; info
// explains.
const (
	LevelError   Level = "error"
	LevelWarning Level = "warning"
	LevelInfo    Level = "info"
)

// Finding codes. They are stable: scripts and tests may match them.
const (
	DiagMalformedForm       = "malformed_form"            // the body does not parse as a form
	DiagBodyDecodedTwice    = "body_decoded_twice"        // the body given was already URL-decoded once
	DiagValuesEncodedTwice  = "values_encoded_twice"      // the sender URL-encoded values twice
	DiagPercentInValues     = "percent_in_values"         // values hold '%': decode exactly once
	DiagMissingAppID        = "missing_app_id"            // no app_id
	DiagMissingSign         = "missing_sign"              // no sign
	DiagSignSpacesRepaired  = "sign_spaces_repaired"      // '+' arrived as spaces in sign and were restored
	DiagSignNotBase64       = "sign_not_base64"           // sign is not standard base64, even repaired
	DiagSignWrongLength     = "sign_wrong_length"         // sign decodes to the wrong number of bytes
	DiagSignEncodedTwice    = "sign_encoded_twice"        // sign verifies once URL-decoded again
	DiagSignURLSafe         = "sign_url_safe_base64"      // sign uses the URL-safe base64 alphabet
	DiagNoKeys              = "no_keys"                   // nothing usable to verify with
	DiagBothModes           = "both_modes"                // a public key and certs are both configured
	DiagKeyIsPrivate        = "key_is_private"            // the "public key" is a private key
	DiagKeyIsCert           = "key_is_cert"               // the "public key" is a certificate
	DiagKeyUnreadable       = "key_unreadable"            // the public key does not parse
	DiagKeyIsAppKey         = "key_is_app_key"            // the configured Alipay key is the app's own key
	DiagSignedWithAppKey    = "signed_with_app_key"       // the app's own public key verifies it
	DiagPrivateHalfVerifies = "private_key_half_verifies" // the public half of a pasted private key verifies it
	DiagPastedCertVerifies  = "pasted_cert_verifies"      // the key of a cert pasted as a public key verifies it
	DiagRootMissing         = "root_missing"              // certs without a root bundle
	DiagRootUnreadable      = "root_unreadable"           // the root bundle does not parse
	DiagCertMissing         = "cert_missing"              // a root bundle without certs
	DiagCertUnreadable      = "cert_unreadable"           // a cert file does not parse
	DiagCertExpired         = "cert_expired"              // a cert has expired
	DiagCertNotYetValid     = "cert_not_yet_valid"        // a cert is not valid yet
	DiagCertUnchained       = "cert_unchained"            // a cert does not chain to the root bundle
	DiagCertIsAppCert       = "cert_is_app_cert"          // a cert looks like the app's own cert
	DiagRefusedCertVerifies = "refused_cert_verifies"     // only a cert the gateway refuses verifies it
	DiagWrongKey            = "wrong_key"                 // no key verifies it, whatever was tried
	DiagEmptyValuesDropped  = "empty_values_dropped"      // the sender's signer dropped empty values
	DiagValuesTrimmed       = "values_trimmed"            // the sender's signer trimmed values
	DiagCharsetMismatch     = "charset_mismatch"          // signed in one charset, sent in another
	DiagContentForm         = "content_form"              // which content form (V1/V2) verified
	DiagSHA1Refused         = "sha1_refused"              // sign_type=RSA (SHA1) and RSA1 not allowed
	DiagSHA1Allowed         = "sha1_allowed"              // sign_type=RSA accepted because allowed
	DiagSHA1DeclaredRSA2    = "sha1_declared_rsa2"        // sign_type RSA2 (or none) but a SHA1 signature
	DiagSHA256DeclaredRSA   = "sha256_declared_rsa"       // sign_type RSA but a SHA256 signature
	DiagSignTypeUnsupported = "sign_type_unsupported"     // a sign_type other than RSA2 or RSA
	DiagUnknownCertSN       = "unknown_cert_sn"           // alipay_cert_sn is none of the configured certs'
	DiagCertSNIgnored       = "cert_sn_ignored"           // alipay_cert_sn in public-key mode
	DiagNoCertSN            = "no_cert_sn"                // cert mode, no alipay_cert_sn: every cert tried
	DiagNotANotification    = "not_a_notification"        // verifies, but the gateway refuses it for another reason
	DiagGatewayRefuses      = "gateway_refuses"           // what the gateway answers, and its reason
)

// Finding is one thing Diagnose found.
type Finding struct {
	Code  string `json:"code"`
	Level Level  `json:"level"`
	Text  string `json:"text"`
}

// Key roles in a report.
const (
	RoleAlipay = "alipay" // configured as Alipay's key or cert
	RoleApp    = "app"    // the app's own public key, for comparison only
)

// KeyInfo describes one configured key or cert.
type KeyInfo struct {
	Name string `json:"name"`
	Role string `json:"role"`
	// Desc is what it is: "RSA 2048 public key, fingerprint …", "cert SN …".
	Desc string `json:"desc"`
	SN   string `json:"sn,omitempty"`
	// Usable is whether the gateway would verify with it.
	Usable bool `json:"usable"`
	// Problem says why it is not usable (as far as it is a key at all).
	Problem string `json:"problem,omitempty"`
}

// Attempt is one signature check Diagnose made.
type Attempt struct {
	Form string `json:"form"` // content form: v1, v2, v1+cert_sn, v2+cert_sn
	// Variant is "" for the notification as received, or the alteration
	// tried ("empty values dropped", ...).
	Variant string `json:"variant,omitempty"`
	Hash    string `json:"hash"` // SHA256 or SHA1
	Key     string `json:"key"`  // the key's name, and SN in cert mode
	OK      bool   `json:"ok"`
}

// Report is Diagnose's answer.
type Report struct {
	// Verified is whether the signature verifies as the gateway checks it,
	// with the keys it would load.
	Verified bool `json:"verified"`
	// Reason is, when not verified, the gateway's reason (bad_signature,
	// unknown_cert_sn, sign_type_refused, missing_sign, malformed_form, ...).
	Reason string `json:"reason,omitempty"`
	// Form, Key and CertSN say what verified.
	Form   string `json:"form,omitempty"`
	Key    string `json:"key,omitempty"`
	CertSN string `json:"cert_sn,omitempty"`

	// The notification's identifying parameters, as received.
	AppID        string `json:"app_id,omitempty"`
	NotifyID     string `json:"notify_id,omitempty"`
	Method       string `json:"method,omitempty"`
	SignType     string `json:"sign_type,omitempty"`
	Charset      string `json:"charset,omitempty"`
	AlipayCertSN string `json:"alipay_cert_sn,omitempty"`

	Keys     []KeyInfo `json:"keys"`
	Attempts []Attempt `json:"attempts"`
	// Findings are ordered errors first (gateway_refuses, the gateway's
	// own answer, leading), then warnings, then info.
	Findings []Finding `json:"findings"`
}

// Has reports whether r has a finding with code.
func (r *Report) Has(code string) bool {
	_, ok := r.Finding(code)
	return ok
}

// Finding returns r's finding with code.
func (r *Report) Finding(code string) (Finding, bool) {
	for _, f := range r.Findings {
		if f.Code == code {
			return f, true
		}
	}
	return Finding{}, false
}
