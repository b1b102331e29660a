package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"text/tabwriter"

	"github.com/alipay-notify-gateway/gateway/internal/diagnose"
)

func runVerify(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("verify",
		"verify [FILE|-] [--key FILE | --public-key B64 | --root FILE --cert FILE[,FILE]] [--app-public-key FILE] [--allow-rsa1] [--json]",
		"alipayctl verify body.txt --key alipay_public_key.txt   # body.txt: the raw POST body as captured (exit 0: verifies, 1: does not)", stderr)
	keyFile := fs.String("key", "", "Alipay's public key `FILE` (支付宝公钥, bare base64 or PEM); default $ALIPAY_PUBLIC_KEY_FILE")
	pubKey := fs.String("public-key", "", "Alipay's public key itself (`B64`); default $ALIPAY_PUBLIC_KEY")
	root := fs.String("root", "", "cert mode: the root bundle `FILE` (alipayRootCert.crt); default $ALIPAY_ROOT_CERT_FILE")
	certs := fs.String("cert", "", "cert mode: Alipay's cert `FILE`s, comma-separated (alipayCertPublicKey_RSA2.crt; old and new during a rotation); default $ALIPAY_PUBLIC_CERT_FILE")
	appKey := fs.String("app-public-key", "", "optional: your app's own public key or cert `FILE` (应用公钥, appCertPublicKey_<appid>.crt), to recognise a mix-up with Alipay's")
	allow := fs.Bool("allow-rsa1", false, "accept sign_type=RSA (SHA1), like ALIPAY_ALLOW_RSA1=true; default $ALIPAY_ALLOW_RSA1")
	asJSON := fs.Bool("json", false, "print the report as JSON")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 1 {
		return usageError("want at most one body FILE (or - for stdin)")
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })

	var in diagnose.DiagnoseInput
	var fromEnv bool
	var err error
	if *keyFile != "" || *pubKey != "" || *root != "" || *certs != "" {
		err = keysFrom(&in, *pubKey, "--public-key", *keyFile, "", *root, "", splitList(*certs), "")
	} else {
		fromEnv = true
		err = keysFrom(&in, os.Getenv("ALIPAY_PUBLIC_KEY"), "ALIPAY_PUBLIC_KEY",
			os.Getenv("ALIPAY_PUBLIC_KEY_FILE"), "ALIPAY_PUBLIC_KEY_FILE ",
			os.Getenv("ALIPAY_ROOT_CERT_FILE"), "ALIPAY_ROOT_CERT_FILE ",
			splitList(os.Getenv("ALIPAY_PUBLIC_CERT_FILE")), "ALIPAY_PUBLIC_CERT_FILE ")
		if err == nil && len(in.PublicKeys) == 0 && in.RootCert == nil && len(in.Certs) == 0 {
			hint := ""
			if os.Getenv("GATEWAY_CONFIG") != "" {
				hint = " (GATEWAY_CONFIG is not read: pass one app's keys)"
			}
			return usageError("no key: give --key FILE, --public-key B64, or --root FILE --cert FILE (or set ALIPAY_PUBLIC_KEY(_FILE), or ALIPAY_ROOT_CERT_FILE and ALIPAY_PUBLIC_CERT_FILE)%s", hint)
		}
	}
	if err != nil {
		return err
	}
	in.AllowRSA1 = *allow
	if !set["allow-rsa1"] {
		if v := os.Getenv("ALIPAY_ALLOW_RSA1"); v != "" {
			b, err := strconv.ParseBool(v)
			if err != nil {
				return usageError("ALIPAY_ALLOW_RSA1=%q is not true or false", v)
			}
			in.AllowRSA1 = b
		}
	}
	if *appKey != "" {
		data, err := os.ReadFile(*appKey)
		if err != nil {
			return err
		}
		in.AppPublicKeys = []diagnose.Source{{Name: *appKey, Data: data}}
	}

	var body []byte
	if name := fs.Arg(0); name == "" || name == "-" {
		body, err = io.ReadAll(os.Stdin)
	} else {
		body, err = os.ReadFile(name)
	}
	if err != nil {
		return err
	}

	r := diagnose.Diagnose(body, in)
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		enc.SetEscapeHTML(false)
		if err := enc.Encode(r); err != nil {
			return err
		}
	} else {
		printReport(stdout, r)
		if id := os.Getenv("ALIPAY_APP_ID"); fromEnv && id != "" && r.AppID != "" && id != r.AppID {
			fmt.Fprintf(stdout, "\nnote: ALIPAY_APP_ID is %s but the notification's app_id is %s: the gateway would answer 403 unknown_app\n", id, r.AppID)
		}
	}
	if !r.Verified {
		return &exitError{code: 1, err: fmt.Errorf("does not verify (%s)", r.Reason)}
	}
	return nil
}

// keysFrom reads the key settings into in; prefix is put before a file
// name in the report ("ALIPAY_PUBLIC_KEY_FILE ").
func keysFrom(in *diagnose.DiagnoseInput, pub, pubName, keyFile, keyPrefix, root, rootPrefix string, certs []string, certPrefix string) error {
	if pub != "" {
		in.PublicKeys = append(in.PublicKeys, diagnose.Source{Name: pubName, Data: []byte(pub)})
	}
	if keyFile != "" {
		data, err := os.ReadFile(keyFile)
		if err != nil {
			return err
		}
		in.PublicKeys = append(in.PublicKeys, diagnose.Source{Name: keyPrefix + keyFile, Data: data})
	}
	if root != "" {
		data, err := os.ReadFile(root)
		if err != nil {
			return err
		}
		in.RootCert = &diagnose.Source{Name: rootPrefix + root, Data: data}
	}
	for _, c := range certs {
		data, err := os.ReadFile(c)
		if err != nil {
			return err
		}
		in.Certs = append(in.Certs, diagnose.Source{Name: certPrefix + c, Data: data})
	}
	return nil
}

func splitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

// printReport writes a report for people.
func printReport(w io.Writer, r diagnose.Report) {
	fmt.Fprintf(w, "notification  app_id=%s notify_id=%s method=%s sign_type=%s charset=%s", dash(r.AppID), dash(r.NotifyID), dash(r.Method), dash(r.SignType), dash(r.Charset))
	if r.AlipayCertSN != "" {
		fmt.Fprintf(w, " alipay_cert_sn=%s", r.AlipayCertSN)
	}
	fmt.Fprintln(w)

	fmt.Fprintln(w, "\nkeys")
	for _, k := range r.Keys {
		state := "usable"
		switch {
		case k.Role == diagnose.RoleApp:
			state = "your app's key, for comparison"
		case !k.Usable:
			state = "NOT USABLE: " + k.Problem
		}
		fmt.Fprintf(w, "  %s: %s [%s]\n", k.Name, k.Desc, state)
	}
	if len(r.Keys) == 0 {
		fmt.Fprintln(w, "  (none)")
	}

	if len(r.Attempts) > 0 {
		fmt.Fprintln(w, "\nattempts")
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		for _, a := range r.Attempts {
			form := a.Form
			if a.Variant != "" {
				form += " (" + a.Variant + ")"
			}
			result := "no"
			if a.OK {
				result = "VERIFIES"
			}
			fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\n", form, a.Hash, a.Key, result)
		}
		tw.Flush()
	}

	fmt.Fprintln(w)
	if r.Verified {
		fmt.Fprintf(w, "VERIFIED: content form %s, key %s", r.Form, r.Key)
		if r.CertSN != "" {
			fmt.Fprintf(w, ", cert SN %s", r.CertSN)
		}
		fmt.Fprintln(w)
	} else {
		fmt.Fprintf(w, "NOT VERIFIED: %s\n", r.Reason)
	}
	if len(r.Findings) > 0 {
		fmt.Fprintln(w, "\nfindings")
		for _, f := range r.Findings {
			fmt.Fprintf(w, "  %-7s %s: %s\n", f.Level, f.Code, f.Text)
		}
	}
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
