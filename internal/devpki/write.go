package devpki

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
)

// File names written by PKI.WriteDir. The certificate names are the ones
// Alipay uses; AppCertFile gives the app certificate's name.
const (
	RootCertFile                = "alipayRootCert.crt"
	AlipayCertFile              = "alipayCertPublicKey_RSA2.crt"
	RotatedCertFile             = "alipayCertPublicKey_RSA2_rotated.crt"
	ExpiredCertFile             = "alipayCertPublicKey_RSA2_expired.crt"
	RogueCertFile               = "alipayCertPublicKey_RSA2_rogue.crt"
	AlipayPrivateKeyFile        = "alipay_private_key.pem"
	AlipayRotatedPrivateKeyFile = "alipay_rotated_private_key.pem"
	AppPrivateKeyFile           = "app_private_key.pem"
)

// File modes used by PKI.WriteDir.
const (
	CertFileMode os.FileMode = 0o644
	KeyFileMode  os.FileMode = 0o600
	DirMode      os.FileMode = 0o700
)

// AppCertFile returns the file name Alipay gives an application's
// certificate: appCertPublicKey_<appID>.crt.
func AppCertFile(appID string) string {
	return "appCertPublicKey_" + appID + ".crt"
}

// WriteDir writes the PKI into dir, creating dir (mode 0700) if it does not
// exist:
//
//   - alipayRootCert.crt: RootBundlePEM;
//   - alipayCertPublicKey_RSA2.crt, alipayCertPublicKey_RSA2_rotated.crt,
//     alipayCertPublicKey_RSA2_expired.crt, alipayCertPublicKey_RSA2_rogue.crt
//     and appCertPublicKey_<AppID>.crt: the PEM of Alipay, Rotated, Expired,
//     Rogue and App (leaf followed by its intermediate);
//   - alipay_private_key.pem, alipay_rotated_private_key.pem and
//     app_private_key.pem: the keys of Alipay, Rotated and App as PKCS#8
//     PEM, for signing test notifications and requests.
//
// Certificates are written with mode 0644 and keys with mode 0600,
// regardless of the umask or of the modes of files being replaced. Each file
// is written to a temporary file and renamed into place.
func (p *PKI) WriteDir(dir string) error {
	if p == nil {
		return errors.New("devpki: WriteDir on nil PKI")
	}
	if !validAppID(p.AppID) {
		return fmt.Errorf("devpki: invalid app ID %q", p.AppID)
	}
	type file struct {
		name string
		data []byte
		mode os.FileMode
	}
	files := []file{
		{RootCertFile, p.RootBundlePEM, CertFileMode},
		{AlipayCertFile, p.Alipay.PEM, CertFileMode},
		{RotatedCertFile, p.Rotated.PEM, CertFileMode},
		{ExpiredCertFile, p.Expired.PEM, CertFileMode},
		{RogueCertFile, p.Rogue.PEM, CertFileMode},
		{AppCertFile(p.AppID), p.App.PEM, CertFileMode},
	}
	for _, k := range []struct {
		name string
		c    Cert
	}{
		{AlipayPrivateKeyFile, p.Alipay},
		{AlipayRotatedPrivateKeyFile, p.Rotated},
		{AppPrivateKeyFile, p.App},
	} {
		data, err := PrivateKeyPKCS8PEM(k.c.Key)
		if err != nil {
			return fmt.Errorf("devpki: %s: %w", k.name, err)
		}
		files = append(files, file{k.name, data, KeyFileMode})
	}
	for _, f := range files {
		if len(f.data) == 0 {
			return fmt.Errorf("devpki: %s: nothing to write (PKI not created by NewPKI?)", f.name)
		}
	}

	if err := os.MkdirAll(dir, DirMode); err != nil {
		return fmt.Errorf("devpki: create directory: %w", err)
	}
	for _, f := range files {
		if err := writeFile(filepath.Join(dir, f.name), f.data, f.mode); err != nil {
			return err
		}
	}
	return nil
}

// writeFile atomically replaces path with data, with exactly the given mode.
func writeFile(path string, data []byte, mode os.FileMode) (err error) {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return fmt.Errorf("devpki: write %s: %w", path, err)
	}
	defer func() {
		if err != nil {
			_ = tmp.Close()
			_ = os.Remove(tmp.Name())
		}
	}()
	// CreateTemp uses 0600; set the final mode explicitly so the umask does
	// not matter.
	if err = tmp.Chmod(mode); err != nil {
		return fmt.Errorf("devpki: write %s: %w", path, err)
	}
	if _, err = tmp.Write(data); err != nil {
		return fmt.Errorf("devpki: write %s: %w", path, err)
	}
	if err = tmp.Close(); err != nil {
		return fmt.Errorf("devpki: write %s: %w", path, err)
	}
	if err = os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("devpki: write %s: %w", path, err)
	}
	return nil
}
