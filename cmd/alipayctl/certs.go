package main

import (
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/alipay-notify-gateway/gateway/internal/alipay"
	"github.com/alipay-notify-gateway/gateway/internal/devpki"
)

// defaultAppID is the app id the dev setup (make run) configures.
const defaultAppID = "2021000000000001"

func runCerts(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("certs", "certs DIR [--app-id ID]",
		"alipayctl certs ./pki --app-id 2021000000000001   # then ALIPAY_ROOT_CERT_FILE=pki/alipayRootCert.crt ALIPAY_PUBLIC_CERT_FILE=pki/alipayCertPublicKey_RSA2.crt", stderr)
	appID := fs.String("app-id", envOr("ALIPAY_APP_ID", defaultAppID), "the app `ID`, for appCertPublicKey_<ID>.crt (default $ALIPAY_APP_ID, else "+defaultAppID+")")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return usageError("want one argument, the directory to write into (see alipayctl certs --help)")
	}
	dir := fs.Arg(0)
	p, err := devpki.NewPKI(*appID)
	if err != nil {
		return err
	}
	if err := p.WriteDir(dir); err != nil {
		return err
	}
	roots, err := alipay.ParseRootBundle(p.RootBundlePEM)
	if err != nil {
		return err
	}
	files := []struct{ name, what string }{
		{devpki.RootCertFile, "root bundle (ALIPAY_ROOT_CERT_FILE); holds a non-RSA root, as Alipay's does"},
		{devpki.AlipayCertFile, "Alipay's signing cert + intermediate (ALIPAY_PUBLIC_CERT_FILE)"},
		{devpki.AlipayPrivateKeyFile, "its private key: alipayctl send --cert-key"},
		{devpki.RotatedCertFile, "a second Alipay cert, as after a rotation"},
		{devpki.AlipayRotatedPrivateKeyFile, "its private key"},
		{devpki.ExpiredCertFile, "an expired Alipay cert (the gateway refuses it)"},
		{devpki.RogueCertFile, "a look-alike cert under another root (the gateway refuses it)"},
		{devpki.AppCertFile(*appID), "the app's own cert (for outbound calls)"},
		{devpki.AppPrivateKeyFile, "the app's private key"},
	}
	for _, f := range files {
		fmt.Fprintf(stdout, "%-50s %s\n", filepath.Join(dir, f.name), f.what)
	}
	fmt.Fprintf(stdout, "\nAlipay cert SN   %s  (alipay_cert_sn)\n", alipay.CertSN(p.Alipay.Cert))
	fmt.Fprintf(stdout, "rotated cert SN  %s\n", alipay.CertSN(p.Rotated.Cert))
	fmt.Fprintf(stdout, "root SN          %s  (alipay_root_cert_sn)\n", roots.SN)
	fmt.Fprintf(stdout, "app cert SN      %s  (app_cert_sn)\n", alipay.CertSN(p.App.Cert))
	return nil
}

func runSN(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("sn", "sn FILE",
		"alipayctl sn alipayCertPublicKey_RSA2.crt   # or alipayRootCert.crt for the root SN", stderr)
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return usageError("want one argument, a cert file (see alipayctl sn --help)")
	}
	data, err := os.ReadFile(fs.Arg(0))
	if err != nil {
		return err
	}
	sn, err := fileSN(data)
	if err != nil {
		return fmt.Errorf("%s: %v", fs.Arg(0), err)
	}
	fmt.Fprintln(stdout, sn)
	return nil
}

// fileSN returns the Alipay SN of the first cert in data or, when data is a
// root bundle (several self-signed roots), the root SN.
func fileSN(data []byte) (string, error) {
	b, err := readCerts(data)
	if err != nil {
		return "", err
	}
	if len(b.Certs)+b.Skipped > 1 && allSelfSigned(b) {
		if b.SN == "" {
			return "", fmt.Errorf("a root bundle without an RSA root: no root SN")
		}
		return b.SN, nil
	}
	return alipay.CertSN(b.Certs[0]), nil
}

// readCerts parses every certificate of a PEM file (alipay.ParseRootBundle
// reads any list of certs; Skipped counts those Go cannot parse).
func readCerts(data []byte) (*alipay.RootBundle, error) {
	b, err := alipay.ParseRootBundle(data)
	if err != nil {
		return nil, fmt.Errorf("no certificate found (want PEM \"-----BEGIN CERTIFICATE-----\")")
	}
	return b, nil
}

func allSelfSigned(b *alipay.RootBundle) bool {
	for _, c := range b.Certs {
		if string(c.RawIssuer) != string(c.RawSubject) {
			return false
		}
	}
	return true
}

// envOr returns the environment variable name, or def when it is unset or
// empty.
func envOr(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}
