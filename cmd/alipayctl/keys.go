package main

import (
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/alipay-notify-gateway/gateway/internal/devpki"
)

// Files written by keys --out.
const (
	publicKeyFile      = "public_key.txt" // bare base64, as the console shows it
	publicKeyPEMFile   = "public_key.pem" // PKIX PEM
	privateKeyPKCS1PEM = "private_key_pkcs1.pem"
	privateKeyPKCS8PEM = "private_key_pkcs8.pem"
	privateKeyPKCS8B64 = "private_key_pkcs8.txt" // bare base64, as Alipay's key tool writes for Java
)

func runKeys(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("keys", "keys [--out DIR]", "alipayctl keys --out ./keys   # then paste keys/public_key.txt into the console", stderr)
	out := fs.String("out", "", "write the key files into `DIR` (created 0700) instead of printing them")
	if err := fs.parseFlagsOnly(args); err != nil {
		return err
	}
	key, err := devpki.NewKey()
	if err != nil {
		return err
	}
	pubB64, err := devpki.PublicKeyBase64(&key.PublicKey)
	if err != nil {
		return err
	}
	pubPEM, err := devpki.PublicKeyPEM(&key.PublicKey)
	if err != nil {
		return err
	}
	p8PEM, err := devpki.PrivateKeyPKCS8PEM(key)
	if err != nil {
		return err
	}
	p8B64, err := devpki.PrivateKeyPKCS8Base64(key)
	if err != nil {
		return err
	}
	p1PEM := devpki.PrivateKeyPKCS1PEM(key)
	if *out == "" {
		fmt.Fprintf(stdout, "# public key (bare base64, as the Alipay console shows it)\n%s\n\n# public key (PEM)\n%s\n# private key (PKCS#1 PEM)\n%s\n# private key (PKCS#8 PEM)\n%s\n# private key (PKCS#8, bare base64)\n%s\n",
			pubB64, pubPEM, p1PEM, p8PEM, p8B64)
		return nil
	}
	if err := os.MkdirAll(*out, 0o700); err != nil {
		return err
	}
	files := []struct {
		name string
		data []byte
		mode os.FileMode
	}{
		{publicKeyFile, []byte(pubB64 + "\n"), 0o644},
		{publicKeyPEMFile, pubPEM, 0o644},
		{privateKeyPKCS1PEM, p1PEM, 0o600},
		{privateKeyPKCS8PEM, p8PEM, 0o600},
		{privateKeyPKCS8B64, []byte(p8B64 + "\n"), 0o600},
	}
	for _, f := range files {
		if err := os.WriteFile(filepath.Join(*out, f.name), f.data, f.mode); err != nil {
			return err
		}
		fmt.Fprintln(stdout, filepath.Join(*out, f.name))
	}
	return nil
}
