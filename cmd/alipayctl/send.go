package main

import (
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/alipay-notify-gateway/gateway/internal/alipay"
	"github.com/alipay-notify-gateway/gateway/internal/samples"
)

func runSend(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("send",
		"send --url URL [--sample NAME | --method M --biz JSON] (--key FILE | --cert-key FILE --cert FILE) [--app-id ID] [--notify-id ID] [--v2] [--now] [--print]",
		"alipayctl send --url http://127.0.0.1:8080/alipay/notify --sample audit-passed --key .dev/keys/alipay/private_key_pkcs8.pem --app-id 2021000000000001", stderr)
	target := fs.String("url", "", "the gateway's notification `URL` (the app's 应用网关)")
	sample := fs.String("sample", "", "send the sample `NAME`: "+strings.Join(samples.Names(), ", "))
	method := fs.String("method", "", "build a notification with msg_method `M` (with --biz)")
	biz := fs.String("biz", "", "biz_content `JSON` for --method")
	keyFile := fs.String("key", "", "public-key mode: the \"Alipay\" private key `FILE` (the counterpart of the gateway's ALIPAY_PUBLIC_KEY; PEM or bare base64, PKCS#1 or PKCS#8)")
	certKeyFile := fs.String("cert-key", "", "cert mode: the private key `FILE` of --cert")
	certFile := fs.String("cert", "", "cert mode: the Alipay cert `FILE` whose SN goes into alipay_cert_sn")
	appID := fs.String("app-id", "", "app_id `ID` (default $ALIPAY_APP_ID if set, else the sample's)")
	notifyID := fs.String("notify-id", "", "notify_id `ID` (default a fresh unique one; give an earlier one to resend it)")
	v2 := fs.Bool("v2", false, "sign with sign_type kept in the signed string (V2) instead of V1")
	now := fs.Bool("now", false, "set a sample's utc_timestamp (or notify_time) to now")
	printOnly := fs.Bool("print", false, "print the signed body instead of sending it")
	timeout := fs.Duration("timeout", 30*time.Second, "HTTP timeout")
	if err := fs.parseFlagsOnly(args); err != nil {
		return err
	}
	if *target == "" && !*printOnly {
		return usageError("--url is required (or --print)")
	}

	var f alipay.Form
	switch {
	case *sample != "" && *method != "":
		return usageError("give --sample or --method, not both")
	case *sample != "":
		s, ok := samples.Get(*sample)
		if !ok {
			return usageError("no sample %q (samples: %s)", *sample, strings.Join(samples.Names(), ", "))
		}
		if *biz != "" {
			return usageError("--biz goes with --method, not --sample")
		}
		f = alipay.Form(s.Form)
		if *now {
			setNow(f, time.Now())
		}
	case *method != "":
		if *biz == "" {
			return usageError("--method needs --biz JSON")
		}
		f = alipay.Form{
			alipay.ParamCharset:    "UTF-8",
			alipay.ParamBizContent: *biz,
			alipay.ParamMsgMethod:  *method,
			alipay.ParamTimestamp:  strconv.FormatInt(time.Now().UnixMilli(), 10),
			"version":              "1.1",
			alipay.ParamSignType:   "RSA2",
		}
	default:
		return usageError("give --sample NAME or --method M --biz JSON")
	}
	switch {
	case *appID != "":
		f[alipay.ParamAppID] = *appID
	case os.Getenv("ALIPAY_APP_ID") != "":
		f[alipay.ParamAppID] = os.Getenv("ALIPAY_APP_ID")
	case f[alipay.ParamAppID] == "":
		return usageError("--app-id is required with --method (or set ALIPAY_APP_ID)")
	}
	if *notifyID != "" {
		f[alipay.ParamNotifyID] = *notifyID
	} else {
		f[alipay.ParamNotifyID] = newNotifyID()
	}

	key, err := signingKey(f, *keyFile, *certKeyFile, *certFile)
	if err != nil {
		return err
	}
	form := alipay.FormV1
	if *v2 {
		form = alipay.FormV2
	}
	signed, err := alipay.Sign(f, key, form, crypto.SHA256)
	if err != nil {
		return err
	}
	body := signed.Encode()
	if *printOnly {
		fmt.Fprintln(stdout, body)
		return nil
	}

	client := &http.Client{Timeout: *timeout}
	resp, err := client.Post(*target, "application/x-www-form-urlencoded", strings.NewReader(body))
	if err != nil {
		return fmt.Errorf("notify_id=%s: %v", f[alipay.ParamNotifyID], err)
	}
	defer resp.Body.Close()
	reply, err := io.ReadAll(io.LimitReader(resp.Body, 4096))
	if err != nil {
		return fmt.Errorf("notify_id=%s: reading the reply: %v", f[alipay.ParamNotifyID], err)
	}
	text := strings.Join(strings.Fields(string(reply)), " ")
	if len(text) > 200 {
		text = text[:200] + "…"
	}
	fmt.Fprintf(stdout, "HTTP %d %s notify_id=%s\n", resp.StatusCode, text, f[alipay.ParamNotifyID])
	if resp.StatusCode != http.StatusOK || string(reply) != "success" {
		return &exitError{code: 1, err: fmt.Errorf("the gateway did not answer 200 success (Alipay would resend)")}
	}
	return nil
}

// signingKey reads the private key to sign with and, in cert mode, sets
// alipay_cert_sn to the cert's SN after checking the key is the cert's.
func signingKey(f alipay.Form, keyFile, certKeyFile, certFile string) (*rsa.PrivateKey, error) {
	switch {
	case keyFile != "" && (certKeyFile != "" || certFile != ""):
		return nil, usageError("give --key (public-key mode) or --cert-key and --cert (cert mode), not both")
	case keyFile != "":
		return readPrivateKey(keyFile)
	case certKeyFile == "" && certFile == "":
		return nil, usageError("give --key FILE, or --cert-key FILE and --cert FILE")
	case certKeyFile == "" || certFile == "":
		return nil, usageError("cert mode needs both --cert-key FILE and --cert FILE")
	}
	key, err := readPrivateKey(certKeyFile)
	if err != nil {
		return nil, err
	}
	data, err := os.ReadFile(certFile)
	if err != nil {
		return nil, err
	}
	b, err := readCerts(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %v", certFile, err)
	}
	leaf := b.Certs[0]
	if pub, ok := leaf.PublicKey.(*rsa.PublicKey); !ok || !pub.Equal(&key.PublicKey) {
		return nil, fmt.Errorf("%s is not the private key of the cert in %s", certKeyFile, certFile)
	}
	f[alipay.ParamCertSN] = alipay.CertSN(leaf)
	return key, nil
}

func readPrivateKey(name string) (*rsa.PrivateKey, error) {
	data, err := os.ReadFile(name)
	if err != nil {
		return nil, err
	}
	key, err := alipay.ParsePrivateKey(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %v", name, err)
	}
	return key, nil
}

// setNow sets a form's time to t: utc_timestamp (ms) when it has one, and
// notify_time (China time) for the older style.
func setNow(f alipay.Form, t time.Time) {
	if _, ok := f[alipay.ParamTimestamp]; ok {
		f[alipay.ParamTimestamp] = strconv.FormatInt(t.UnixMilli(), 10)
	}
	if _, ok := f[alipay.ParamNotifyTime]; ok {
		f[alipay.ParamNotifyTime] = t.In(alipay.ChinaTime).Format(time.DateTime)
	}
}

// newNotifyID returns a fresh notify_id: 32 random hex digits.
func newNotifyID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}
