// Package deploy_test checks the deployment files under deploy/ and the
// example settings under configs/: they parse, name only variables the
// gateway reads, load with the real configuration code, and match the
// metrics the gateway exports; and make bench's naive baseline
// (deploy/dev/naive*.sql) against the migrations and the gateway's
// statements (naive_test.go). deploy/ holds no Go code but these tests.
package deploy_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"debug/elf"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"io/fs"
	"maps"
	"net"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/alipay-notify-gateway/gateway/internal/config"
	"github.com/alipay-notify-gateway/gateway/internal/devpki"
	"github.com/alipay-notify-gateway/gateway/internal/testkit"
)

// Paths, relative to deploy/ (the directory go test runs in).
const (
	root          = ".."
	configsDir    = "../configs"
	envExample    = "../configs/gateway.env.example"
	yamlExample   = "../configs/gateway.example.yaml"
	dockerfile    = "Dockerfile"
	composeFile   = "docker-compose.yml"
	k8sDir        = "k8s"
	unitFile      = "systemd/alipay-notify-gateway.service"
	alertsFile    = "prometheus/alerts.yml"
	dashboardFile = "grafana/dashboard.json"

	// mountDir is where every deployment puts the key and certificate
	// files (and gateway.yaml).
	mountDir = "/etc/alipay-notify-gateway"
	// defaultShutdown is SHUTDOWN_TIMEOUT's default (config.Config).
	defaultShutdown = 25 * time.Second
)

// metric is one metric the gateway exports.
type metric struct {
	name   string
	typ    string // counter, gauge or histogram
	labels []string
}

// metrics are the gateway's metrics, with exactly these names; the
// dashboard and the alerts may use no other.
var metrics = []metric{
	{"alipay_gateway_notifications_total", "counter", []string{"msg_method", "outcome"}},
	{"alipay_gateway_refusals_total", "counter", []string{"reason"}},
	{"alipay_gateway_intake_duration_seconds", "histogram", []string{"channel"}},
	{"alipay_gateway_batch_size", "histogram", nil},
	{"alipay_gateway_db_pool_connections", "gauge", []string{"state"}},
	{"alipay_gateway_outbound_calls_total", "counter", []string{"method", "result"}},
	{"alipay_gateway_oldest_failed_notification_age_seconds", "gauge", nil},
	{"alipay_gateway_last_notification_timestamp_seconds", "gauge", nil},
	{"alipay_gateway_websocket_connected", "gauge", []string{"app_id"}},
	{"alipay_gateway_websocket_reconnects_total", "counter", []string{"app_id"}},
	{"alipay_gateway_cert_expiry_timestamp_seconds", "gauge", []string{"app_id", "cert_sn"}},
	{"alipay_gateway_webhook_attempts_total", "counter", []string{"endpoint_id", "result"}},
	{"alipay_gateway_webhook_attempt_duration_seconds", "histogram", []string{"endpoint_id"}},
	{"alipay_gateway_webhook_oldest_pending_seconds", "gauge", []string{"endpoint_id"}},
	{"alipay_gateway_webhook_dead_deliveries", "gauge", []string{"endpoint_id"}},
	{"alipay_gateway_webhook_endpoints_disabled", "gauge", nil},
	{"alipay_gateway_events_feed_lag_seconds", "gauge", nil},
	{"alipay_gateway_pruned_rows_total", "counter", []string{"what"}},
	{"alipay_gateway_table_bytes", "gauge", []string{"table"}},
	{"alipay_gateway_retention_seconds", "gauge", []string{"what"}},
	{"alipay_gateway_template_batch_sends_total", "counter", []string{"app_id", "result"}},
	{"alipay_gateway_template_batch_send_duration_seconds", "histogram", nil},
	{"alipay_gateway_template_batch_pending", "gauge", []string{"app_id"}},
	{"alipay_gateway_template_batch_idle_seconds", "gauge", []string{"app_id"}},
	{"alipay_gateway_template_batch_stopped_total", "counter", []string{"reason"}},
	{"alipay_gateway_template_batch_paused_total", "counter", []string{"reason"}},
	{"alipay_gateway_template_batch_rate_wait_seconds_total", "counter", []string{"app_id"}},
	{"alipay_gateway_reconcile_runs_total", "counter", []string{"trigger"}},
	{"alipay_gateway_reconcile_checks_total", "counter", []string{"kind"}},
	{"alipay_gateway_reconcile_repairs_total", "counter", []string{"kind"}},
	{"alipay_gateway_reconcile_errors_total", "counter", []string{"kind"}},
}

// labelValues are the known values of some labels: a matcher naming another
// value is a typo. (reason may gain values; add them here.)
var labelValues = map[string][]string{
	"outcome": {"applied", "stale", "unhandled", "failed", "duplicate", "replay", "foreign", "pruned"},
	"what":    {"notifications", "failed_notifications", "events", "template_messages", "template_batches", "pruned_digests"},
	"reason": {"bad_signature", "unknown_app", "unknown_cert_sn", "missing_sign", "sign_type_refused",
		"body_too_large", "malformed_form", "missing_parameter", "bad_charset", "database_unavailable",
		"empty_body", "unreadable_body", "duplicate_parameter", "bad_parameter", "timeout", "shutting_down",
		"too_many_parameters", "cert_expired", "app_mismatch", "future_timestamp", "notify_id_conflict",
		"token_key_missing",
		"authorization_cancelled", "authorization_expired", "template_illegal", "template_keywords",
		"insufficient_permissions", "app_refused", "merchant_token_expired", "merchant_token_missing", "unverified_refusal"},
	"state": {"acquired", "idle", "total", "max"},
	"result": {"success", "business_error", "transport_error", "delivered", "failed", "dead",
		"sent", "unknown", "skipped", "retried", "rate_limited", "paused", "cancelled"},
	"kind": {"authorization", "mini_app_version", "business_error", "invalid_token", "rate_limited", "upstream_error",
		"unknown_status", "no_token", "abandoned", "foreign", "token_changed"},
	"trigger": {"schedule", "outage", "manual"},
}

// targetLabels are added by Prometheus to every series.
var targetLabels = []string{"job", "instance"}

// ---------------------------------------------------------------------------
// Helpers

func readFile(t *testing.T, name string) []byte {
	t.Helper()
	data, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// yamlFiles returns every *.yml and *.yaml under deploy/ (but deploy/dev/,
// not a deployment, and deploy/secrets/, local files) and configs/.
func yamlFiles(t *testing.T) []string {
	t.Helper()
	var files []string
	for _, dir := range []string{".", configsDir} {
		err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			if d.IsDir() {
				if p != dir && (strings.HasPrefix(d.Name(), ".") || dir == "." && (p == "dev" || p == "secrets")) {
					return filepath.SkipDir
				}
				return nil
			}
			if ext := filepath.Ext(p); ext == ".yml" || ext == ".yaml" {
				files = append(files, p)
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	return files
}

// decodeYAML returns the non-empty documents of a YAML file.
func decodeYAML(t *testing.T, name string) []any {
	t.Helper()
	dec := yaml.NewDecoder(bytes.NewReader(readFile(t, name)))
	var docs []any
	for i := 1; ; i++ {
		var doc any
		err := dec.Decode(&doc)
		if errors.Is(err, io.EOF) {
			return docs
		}
		if err != nil {
			t.Fatalf("%s: document %d: %v", name, i, err)
		}
		if doc != nil {
			docs = append(docs, doc)
		}
	}
}

// dig walks v by map keys (string) and list indexes (int); nil if absent.
func dig(v any, keys ...any) any {
	for _, k := range keys {
		switch k := k.(type) {
		case string:
			m, ok := v.(map[string]any)
			if !ok {
				return nil
			}
			v = m[k]
		case int:
			l, ok := v.([]any)
			if !ok || k >= len(l) {
				return nil
			}
			v = l[k]
		}
	}
	return v
}

func digMap(v any, keys ...any) map[string]any {
	m, _ := dig(v, keys...).(map[string]any)
	return m
}

func digList(v any, keys ...any) []any {
	l, _ := dig(v, keys...).([]any)
	return l
}

func digString(v any, keys ...any) string {
	switch x := dig(v, keys...).(type) {
	case string:
		return x
	case int:
		return strconv.Itoa(x)
	case bool:
		return strconv.FormatBool(x)
	}
	return ""
}

func digInt(v any, keys ...any) int {
	n, _ := dig(v, keys...).(int)
	return n
}

// k8sObjects returns the Kubernetes objects of deploy/k8s by "Kind/name".
func k8sObjects(t *testing.T) map[string]map[string]any {
	t.Helper()
	objs := map[string]map[string]any{}
	files, err := filepath.Glob(filepath.Join(k8sDir, "*.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		for _, doc := range decodeYAML(t, f) {
			m, ok := doc.(map[string]any)
			if !ok {
				t.Fatalf("%s: a document is not a mapping", f)
			}
			if m["kind"] == "Kustomization" {
				continue
			}
			key := digString(m, "kind") + "/" + digString(m, "metadata", "name")
			if _, dup := objs[key]; dup {
				t.Fatalf("%s: %s defined twice", f, key)
			}
			objs[key] = m
		}
	}
	return objs
}

// envFile parses KEY=value lines: active ones, and commented-out
// alternatives ("# KEY=value").
func envFile(t *testing.T, name string) (active, commented map[string]string) {
	t.Helper()
	re := regexp.MustCompile(`^(#\s*)?([A-Z][A-Z0-9_]*)=(.*)$`)
	active, commented = map[string]string{}, map[string]string{}
	for i, line := range strings.Split(string(readFile(t, name)), "\n") {
		m := re.FindStringSubmatch(strings.TrimSpace(line))
		if m == nil {
			if l := strings.TrimSpace(line); l != "" && !strings.HasPrefix(l, "#") {
				t.Errorf("%s:%d: not KEY=value: %q", name, i+1, line)
			}
			continue
		}
		dst := active
		if m[1] != "" {
			dst = commented
		}
		if _, dup := dst[m[2]]; dup {
			t.Errorf("%s:%d: %s set twice", name, i+1, m[2])
		}
		if strings.ContainsAny(m[3], `"'$`) || strings.HasPrefix(m[2], "export") {
			t.Errorf("%s:%d: value of %s has quotes or $: systemd and compose read them differently", name, i+1, m[2])
		}
		dst[m[2]] = m[3]
	}
	return active, commented
}

// unit is a parsed systemd unit: section -> key -> values in order.
type unit map[string]map[string][]string

func parseUnit(t *testing.T, name string) unit {
	t.Helper()
	u := unit{}
	section := ""
	for i, line := range strings.Split(string(readFile(t, name)), "\n") {
		line = strings.TrimSpace(line)
		switch {
		case line == "" || strings.HasPrefix(line, "#") || strings.HasPrefix(line, ";"):
		case strings.HasPrefix(line, "[") && strings.HasSuffix(line, "]"):
			section = line[1 : len(line)-1]
			u[section] = map[string][]string{}
		default:
			k, v, ok := strings.Cut(line, "=")
			if !ok || section == "" || strings.HasSuffix(line, `\`) {
				t.Fatalf("%s:%d: unexpected line %q", name, i+1, line)
			}
			u[section][k] = append(u[section][k], v)
		}
	}
	return u
}

// unitWords splits a systemd value into words, honouring double quotes.
func unitWords(v string) []string {
	var words []string
	var b strings.Builder
	quoted, started := false, false
	for _, r := range v {
		switch {
		case r == '"':
			quoted, started = !quoted, true
		case (r == ' ' || r == '\t') && !quoted:
			if started {
				words = append(words, b.String())
				b.Reset()
				started = false
			}
		default:
			b.WriteRune(r)
			started = true
		}
	}
	if started {
		words = append(words, b.String())
	}
	return words
}

// duration parses a compose, systemd or Go duration ("35s", "1m30s", "35").
func duration(t *testing.T, where, s string) time.Duration {
	t.Helper()
	if _, err := strconv.Atoi(s); err == nil {
		s += "s"
	}
	d, err := time.ParseDuration(strings.ReplaceAll(s, " ", ""))
	if err != nil {
		t.Fatalf("%s: %v", where, err)
	}
	return d
}

// shutdownTimeout is SHUTDOWN_TIMEOUT as set in env (or its default).
func shutdownTimeout(t *testing.T, where string, env map[string]string) time.Duration {
	t.Helper()
	if v := env["SHUTDOWN_TIMEOUT"]; v != "" {
		return duration(t, where+" SHUTDOWN_TIMEOUT", v)
	}
	return defaultShutdown
}

// isGatewayService says whether a compose service runs the gateway image.
func isGatewayService(svc map[string]any) bool {
	return svc["build"] != nil || strings.Contains(digString(svc, "image"), "alipay-notify-gateway")
}

// composeEnv returns a compose service's environment (map or list form).
func composeEnv(t *testing.T, svc map[string]any) map[string]string {
	t.Helper()
	env := map[string]string{}
	switch e := svc["environment"].(type) {
	case map[string]any:
		for k, v := range e {
			env[k] = digString(v)
		}
	case []any:
		for _, kv := range e {
			k, v, _ := strings.Cut(digString(kv), "=")
			env[k] = v
		}
	case nil:
	default:
		t.Fatalf("compose environment: unexpected %T", e)
	}
	return env
}

// podContainers returns the containers and init containers of a pod spec.
func podContainers(spec any) []map[string]any {
	var cs []map[string]any
	for _, key := range []string{"initContainers", "containers"} {
		for _, c := range digList(spec, key) {
			if m, ok := c.(map[string]any); ok {
				cs = append(cs, m)
			}
		}
	}
	return cs
}

// testFiles writes the test PKI and a public key file into a new directory
// and returns a function mapping an example path (under mountDir) to the
// test file standing in for it.
func testFiles(t *testing.T) func(p string) string {
	t.Helper()
	p := testkit.PKI()
	dir := t.TempDir()
	if err := p.WriteDir(dir); err != nil {
		t.Fatal(err)
	}
	b64, err := devpki.PublicKeyBase64(&p.Alipay.Key.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	pub := filepath.Join(dir, "alipay_public_key.txt")
	if err := os.WriteFile(pub, []byte(b64+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return func(p string) string {
		t.Helper()
		if !strings.HasPrefix(p, mountDir+"/") {
			t.Errorf("path %q is not under %s, where the deployments mount the key files", p, mountDir)
		}
		base := path.Base(p)
		switch {
		case strings.HasPrefix(base, "alipay_public_key") && strings.HasSuffix(base, ".txt"):
			return pub
		case base == "alipayRootCert.crt":
			return filepath.Join(dir, devpki.RootCertFile)
		case strings.HasPrefix(base, "alipayCertPublicKey_RSA2") && strings.HasSuffix(base, "_next.crt"):
			return filepath.Join(dir, devpki.RotatedCertFile)
		case strings.HasPrefix(base, "alipayCertPublicKey_RSA2") && strings.HasSuffix(base, ".crt"):
			return filepath.Join(dir, devpki.AlipayCertFile)
		}
		t.Errorf("path %q: no test file stands in for it", p)
		return p
	}
}

// exampleApps decodes configs/gateway.example.yaml as config does.
func exampleApps(t *testing.T) []config.AppSettings {
	t.Helper()
	var f struct {
		Apps []config.AppSettings `yaml:"apps"`
	}
	dec := yaml.NewDecoder(bytes.NewReader(readFile(t, yamlExample)))
	dec.KnownFields(true)
	if err := dec.Decode(&f); err != nil {
		t.Fatalf("%s: %v", yamlExample, err)
	}
	return f.Apps
}

// writeExampleYAML writes the example apps with their files replaced by
// test files, and returns its name.
func writeExampleYAML(t *testing.T, files func(string) string) string {
	t.Helper()
	apps := exampleApps(t)
	for i := range apps {
		a := &apps[i]
		if a.PublicKeyFile != "" {
			a.PublicKeyFile = files(a.PublicKeyFile)
		}
		if a.RootCertFile != "" {
			a.RootCertFile = files(a.RootCertFile)
		}
		for j := range a.PublicCertFiles {
			a.PublicCertFiles[j] = files(a.PublicCertFiles[j])
		}
	}
	data, err := yaml.Marshal(map[string]any{"apps": apps})
	if err != nil {
		t.Fatal(err)
	}
	name := filepath.Join(t.TempDir(), "gateway.yaml")
	if err := os.WriteFile(name, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return name
}

func goCommand(t *testing.T, ctx context.Context, args ...string) *exec.Cmd {
	t.Helper()
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Skipf("no go command: %v", err)
	}
	cmd := exec.CommandContext(ctx, goBin, args...)
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	return cmd
}

// ---------------------------------------------------------------------------
// Manifests

func TestManifests_Parse(t *testing.T) {
	t.Parallel()
	files := yamlFiles(t)
	for _, want := range []string{
		composeFile, alertsFile, yamlExample,
		"k8s/deployment.yaml", "k8s/service.yaml", "k8s/configmap.yaml",
		"k8s/secret.template.yaml", "k8s/pdb.yaml", "k8s/kustomization.yaml",
	} {
		if !slices.Contains(files, filepath.FromSlash(want)) {
			t.Errorf("%s not found among %v", want, files)
		}
	}
	for _, f := range files {
		docs := decodeYAML(t, f)
		if len(docs) == 0 {
			t.Errorf("%s: no document", f)
		}
		if filepath.Dir(f) != k8sDir {
			continue
		}
		for i, doc := range docs {
			if digString(doc, "apiVersion") == "" || digString(doc, "kind") == "" {
				t.Errorf("%s: document %d has no apiVersion or kind", f, i+1)
			}
			if digString(doc, "kind") != "Kustomization" && digString(doc, "metadata", "name") == "" {
				t.Errorf("%s: document %d has no metadata.name", f, i+1)
			}
		}
	}
	var dash any
	if err := json.Unmarshal(readFile(t, dashboardFile), &dash); err != nil {
		t.Errorf("%s: %v", dashboardFile, err)
	}
}

// TestManifests_EnvVars: every environment variable the deployment files set
// for the gateway is one it reads.
func TestManifests_EnvVars(t *testing.T) {
	t.Parallel()
	known := config.EnvVars()
	type use struct{ where, name string }
	var uses []use
	add := func(where string, names ...string) {
		if len(names) == 0 {
			t.Errorf("%s: no variable found (is the check still reading it right?)", where)
		}
		for _, n := range names {
			uses = append(uses, use{where, n})
		}
	}

	// docker compose: the gateway service's environment.
	services := digMap(decodeYAML(t, composeFile)[0], "services")
	for name, svc := range services {
		if svc, ok := svc.(map[string]any); ok && isGatewayService(svc) {
			var names []string
			for k := range composeEnv(t, svc) {
				names = append(names, k)
			}
			add(composeFile+" services."+name+".environment", names...)
		}
	}

	// Kubernetes: containers' env and ConfigMap data.
	files, _ := filepath.Glob(filepath.Join(k8sDir, "*.yaml"))
	for _, f := range files {
		for _, doc := range decodeYAML(t, f) {
			switch digString(doc, "kind") {
			case "ConfigMap":
				var names []string
				for k := range digMap(doc, "data") {
					names = append(names, k)
				}
				add(f+" ConfigMap "+digString(doc, "metadata", "name"), names...)
			case "Deployment", "StatefulSet", "DaemonSet", "Job":
				for _, c := range podContainers(dig(doc, "spec", "template", "spec")) {
					var names []string
					for _, e := range digList(c, "env") {
						names = append(names, digString(e, "name"))
					}
					add(f+" container "+digString(c, "name")+" env", names...)
				}
			}
		}
	}

	// The example environment file, commented-out alternatives included.
	active, commented := envFile(t, envExample)
	for _, m := range []map[string]string{active, commented} {
		var names []string
		for k := range m {
			names = append(names, k)
		}
		add(envExample, names...)
	}

	// systemd: Environment= assignments.
	var names []string
	for _, v := range parseUnit(t, unitFile)["Service"]["Environment"] {
		for _, w := range unitWords(v) {
			k, _, ok := strings.Cut(w, "=")
			if !ok {
				t.Errorf("%s: Environment word %q is not NAME=value", unitFile, w)
			}
			names = append(names, k)
		}
	}
	add(unitFile+" Environment=", names...)

	for _, u := range uses {
		if !slices.Contains(known, u.name) {
			t.Errorf("%s: %s is not a variable the gateway reads (config.EnvVars())", u.where, u.name)
		}
	}
}

// ---------------------------------------------------------------------------
// configs/

// notYetDocumented are variables the gateway reads that the deployment
// files do not use yet (outbound calls and the WebSocket channel). Remove a
// name from here once configs/gateway.env.example documents it.
var notYetDocumented = []string{}

// TestConfigs_EnvExampleComplete: the example documents every variable. A
// variable added to config.Config must be added to
// configs/gateway.env.example too (or, for now, to notYetDocumented).
func TestConfigs_EnvExampleComplete(t *testing.T) {
	t.Parallel()
	active, commented := envFile(t, envExample)
	known := config.EnvVars()
	for _, name := range known {
		_, a := active[name]
		_, c := commented[name]
		if !a && !c && !slices.Contains(notYetDocumented, name) {
			t.Errorf("%s does not document %s", envExample, name)
		}
	}
	for _, name := range notYetDocumented {
		if !slices.Contains(known, name) {
			t.Errorf("notYetDocumented lists %s, which the gateway does not read", name)
		}
	}
}

func TestConfigs_ExampleYAMLLoads(t *testing.T) {
	t.Parallel()
	apps := exampleApps(t)
	name := writeExampleYAML(t, testFiles(t))
	cfg, err := config.Load(map[string]string{
		"DATABASE_URL":   "postgres://gateway@127.0.0.1:5432/gateway",
		"GATEWAY_CONFIG": name,
	}, time.Now())
	if err != nil {
		t.Fatalf("config.Load(%s with test keys): %v", yamlExample, err)
	}
	if len(cfg.Apps) != 2 || len(apps) != 2 {
		t.Fatalf("%d apps loaded, want 2", len(cfg.Apps))
	}
	keyApp, certApp := cfg.Apps[0], cfg.Apps[1]
	if keyApp.ID != apps[0].ID || keyApp.CertMode || len(keyApp.Keys) != 1 {
		t.Errorf("first app: %s cert mode %v, %d keys; want %s in public-key mode", keyApp.ID, keyApp.CertMode, len(keyApp.Keys), apps[0].ID)
	}
	if certApp.ID != apps[1].ID || !certApp.CertMode || len(certApp.Keys) != 2 || certApp.Keys[0].SN == certApp.Keys[1].SN {
		t.Errorf("second app: %s cert mode %v, %d keys; want %s in certificate mode with two certificates (a rotation)", certApp.ID, certApp.CertMode, len(certApp.Keys), apps[1].ID)
	}
}

// TestConfigs_EnvExampleLoads: the example environment loads as it is (once
// its placeholder secret is replaced), and so do its commented-out
// alternatives (certificate mode, GATEWAY_CONFIG).
func TestConfigs_EnvExampleLoads(t *testing.T) {
	t.Parallel()
	files := testFiles(t)
	active, commented := envFile(t, envExample)
	key := make([]byte, 32)
	_, _ = rand.Read(key)

	// withFiles returns env with the file settings pointed at test files.
	withFiles := func(env map[string]string) map[string]string {
		out := map[string]string{}
		for k, v := range env {
			switch {
			case v == "":
			case k == "GATEWAY_CONFIG":
				if !strings.HasPrefix(v, mountDir+"/") {
					t.Errorf("GATEWAY_CONFIG=%s is not under %s", v, mountDir)
				}
				v = writeExampleYAML(t, files)
			case strings.HasSuffix(k, "_FILE"):
				parts := strings.Split(v, ",")
				for i := range parts {
					parts[i] = files(parts[i])
				}
				v = strings.Join(parts, ",")
			}
			out[k] = v
		}
		return out
	}

	t.Run("ErrPlaceholderKey", func(t *testing.T) {
		_, err := config.Load(withFiles(active), time.Now())
		if err == nil || !strings.Contains(err.Error(), "TOKEN_ENCRYPTION_KEY") {
			t.Fatalf("config.Load(example as is) = %v; want the placeholder TOKEN_ENCRYPTION_KEY refused", err)
		}
	})

	base := func() map[string]string {
		env := maps.Clone(active)
		env["TOKEN_ENCRYPTION_KEY"] = base64.StdEncoding.EncodeToString(key)
		env["OPS_API_TOKENS"] = "test-token-1,test-token-2"
		return env
	}
	certMode := base()
	delete(certMode, "ALIPAY_PUBLIC_KEY_FILE")
	certMode["ALIPAY_ROOT_CERT_FILE"] = commented["ALIPAY_ROOT_CERT_FILE"]
	certMode["ALIPAY_PUBLIC_CERT_FILE"] = commented["ALIPAY_PUBLIC_CERT_FILE"]
	multi := base()
	for k := range multi {
		if strings.HasPrefix(k, "ALIPAY_") {
			delete(multi, k)
		}
	}
	multi["GATEWAY_CONFIG"] = commented["GATEWAY_CONFIG"]
	// Every other commented-out setting (tuning left at its default).
	tuned := base()
	for k, v := range commented {
		if !strings.HasPrefix(k, "ALIPAY_") && k != "GATEWAY_CONFIG" {
			tuned[k] = v
		}
	}

	for name, tc := range map[string]struct {
		env              map[string]string
		apps, certModeKs int
	}{
		"PublicKey":     {base(), 1, 0},
		"Certificates":  {certMode, 1, 2},
		"GatewayConfig": {multi, 2, 2},
		"Tuned":         {tuned, 1, 0},
	} {
		t.Run(name, func(t *testing.T) {
			cfg, err := config.Load(withFiles(tc.env), time.Now())
			if err != nil {
				t.Fatalf("config.Load: %v", err)
			}
			certKeys := 0
			for _, a := range cfg.Apps {
				if a.CertMode {
					certKeys += len(a.Keys)
				}
			}
			if len(cfg.Apps) != tc.apps || certKeys != tc.certModeKs || cfg.Sealer == nil || len(cfg.OpsAPITokens) != 2 {
				t.Errorf("%d apps, %d certificates, sealer %v, %d tokens", len(cfg.Apps), certKeys, cfg.Sealer != nil, len(cfg.OpsAPITokens))
			}
		})
	}
}

// ---------------------------------------------------------------------------
// Dockerfile and binary

type instruction struct {
	cmd  string // upper case
	args string
}

// parseDockerfile returns the instructions, continuation lines joined and
// comments dropped.
func parseDockerfile(t *testing.T) []instruction {
	t.Helper()
	var out []instruction
	var cur strings.Builder
	for _, line := range strings.Split(string(readFile(t, dockerfile)), "\n") {
		trimmed := strings.TrimSpace(line)
		if strings.HasPrefix(trimmed, "#") || (trimmed == "" && cur.Len() == 0) {
			continue
		}
		if s, ok := strings.CutSuffix(trimmed, `\`); ok {
			cur.WriteString(s + " ")
			continue
		}
		cur.WriteString(trimmed)
		cmd, args, _ := strings.Cut(strings.TrimSpace(cur.String()), " ")
		out = append(out, instruction{strings.ToUpper(cmd), strings.TrimSpace(args)})
		cur.Reset()
	}
	return out
}

type stage struct {
	image, name string
	instrs      []instruction
}

func dockerStages(t *testing.T) []stage {
	t.Helper()
	var stages []stage
	for _, in := range parseDockerfile(t) {
		if in.cmd == "FROM" {
			var words []string
			for _, w := range strings.Fields(in.args) {
				if !strings.HasPrefix(w, "--") {
					words = append(words, w)
				}
			}
			s := stage{image: words[0]}
			if len(words) == 3 && strings.EqualFold(words[1], "AS") {
				s.name = words[2]
			}
			stages = append(stages, s)
			continue
		}
		if len(stages) == 0 {
			if in.cmd != "ARG" {
				t.Fatalf("%s: %s before the first FROM", dockerfile, in.cmd)
			}
			continue
		}
		stages[len(stages)-1].instrs = append(stages[len(stages)-1].instrs, in)
	}
	return stages
}

func TestDockerfile_Hardened(t *testing.T) {
	t.Parallel()
	stages := dockerStages(t)
	if len(stages) < 2 {
		t.Fatalf("%d stages; want a build stage and a final stage", len(stages))
	}
	build, final := stages[0], stages[len(stages)-1]
	if !strings.HasPrefix(build.image, "golang:1.26") {
		t.Errorf("build stage FROM %s; want golang:1.26-*", build.image)
	}

	// Build: static (CGO_ENABLED=0), both commands, trimmed.
	cgoOff, built := false, false
	for _, in := range build.instrs {
		if in.cmd == "ENV" && regexp.MustCompile(`(^|\s)CGO_ENABLED=0(\s|$)`).MatchString(in.args) {
			cgoOff = true
		}
		if in.cmd == "RUN" && strings.Contains(in.args, "go build") {
			built = true
			if !cgoOff && !strings.Contains(in.args, "CGO_ENABLED=0 go build") {
				t.Errorf("go build without CGO_ENABLED=0: %s", in.args)
			}
			for _, want := range []string{"-trimpath", "./cmd/gateway", "./cmd/alipayctl"} {
				if !strings.Contains(in.args, want) {
					t.Errorf("go build without %s: %s", want, in.args)
				}
			}
		}
	}
	if !built {
		t.Error("the build stage runs no go build")
	}

	// Final: distroless static or scratch, not root.
	if !strings.HasPrefix(final.image, "gcr.io/distroless/static") && final.image != "scratch" {
		t.Errorf("final stage FROM %s; want gcr.io/distroless/static* or scratch", final.image)
	}
	user := ""
	if strings.HasSuffix(strings.SplitN(final.image, "@", 2)[0], ":nonroot") {
		user = "65532"
	}
	var entrypoint, expose []string
	copied := false
	for _, in := range final.instrs {
		switch in.cmd {
		case "USER":
			user = in.args
		case "ENTRYPOINT":
			if err := json.Unmarshal([]byte(in.args), &entrypoint); err != nil {
				t.Errorf("ENTRYPOINT %s: not the exec (JSON) form: %v", in.args, err)
			}
		case "EXPOSE":
			expose = append(expose, strings.Fields(in.args)...)
		case "COPY":
			if strings.Contains(in.args, "--from="+build.name) && strings.HasSuffix(in.args, " /gateway") {
				copied = true
			}
		case "RUN":
			t.Errorf("final stage RUN %s: distroless has no shell", in.args)
		}
	}
	uid, _, _ := strings.Cut(user, ":")
	if n, err := strconv.Atoi(uid); user == "" || uid == "root" || (err == nil && n == 0) || (err != nil && uid != "nonroot") {
		t.Errorf("final stage user %q; want a non-root user (65532)", user)
	}
	if !slices.Equal(entrypoint, []string{"/gateway"}) {
		t.Errorf("ENTRYPOINT %q; want [\"/gateway\"]", entrypoint)
	}
	if !slices.Contains(expose, "8080") {
		t.Errorf("EXPOSE %v; want 8080", expose)
	}
	if !copied {
		t.Errorf("final stage does not COPY --from=%s ... /gateway", build.name)
	}
}

// TestDockerfile_CopiesEveryPackage: the build stage copies the directory of
// every package of this module the commands import (and go.mod, go.sum).
func TestDockerfile_CopiesEveryPackage(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := goCommand(t, ctx, "list", "-e", "-deps", "-f", "{{if .Module}}{{if .Module.Main}}{{.Dir}}{{end}}{{end}}", "./cmd/gateway", "./cmd/alipayctl")
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, out)
	}
	absRoot, err := filepath.Abs(root)
	if err != nil {
		t.Fatal(err)
	}
	copied := map[string]bool{}
	for _, in := range dockerStages(t)[0].instrs {
		if in.cmd != "COPY" {
			continue
		}
		var srcs []string
		for _, w := range strings.Fields(in.args) {
			if !strings.HasPrefix(w, "--") {
				srcs = append(srcs, w)
			}
		}
		for _, s := range srcs[:len(srcs)-1] {
			copied[strings.TrimSuffix(strings.TrimPrefix(s, "./"), "/")] = true
		}
	}
	need := []string{"go.mod", "go.sum"}
	for _, dir := range strings.Fields(string(out)) {
		rel, err := filepath.Rel(absRoot, dir)
		if err != nil || strings.HasPrefix(rel, "..") {
			t.Fatalf("package directory %s outside %s", dir, absRoot)
		}
		if top := strings.Split(filepath.ToSlash(rel), "/")[0]; !slices.Contains(need, top) {
			need = append(need, top)
		}
	}
	ignore := dockerignore(t)
	for _, n := range need {
		if !copied[n] && !copied["."] {
			t.Errorf("%s: the build stage does not COPY %s", dockerfile, n)
		}
		if ignore(n) {
			t.Errorf("%s.dockerignore leaves %s out of the build context", dockerfile, n)
		}
	}
	for _, n := range []string{".git", ".dev", "bin", "deploy", "configs"} {
		if !ignore(n) {
			t.Errorf("%s.dockerignore sends %s to the builder", dockerfile, n)
		}
	}
}

// dockerignore returns whether Dockerfile.dockerignore leaves a top-level
// name out of the build context (the last matching pattern wins).
func dockerignore(t *testing.T) func(name string) bool {
	t.Helper()
	var patterns []string
	for _, line := range strings.Split(string(readFile(t, dockerfile+".dockerignore")), "\n") {
		if line = strings.TrimSpace(line); line != "" && !strings.HasPrefix(line, "#") {
			patterns = append(patterns, line)
		}
	}
	return func(name string) bool {
		ignored := false
		for _, p := range patterns {
			exclude := true
			if rest, ok := strings.CutPrefix(p, "!"); ok {
				p, exclude = rest, false
			}
			p = strings.TrimSuffix(strings.TrimPrefix(p, "/"), "/")
			if ok, err := filepath.Match(p, name); err != nil {
				t.Fatalf("%s.dockerignore: %q: %v", dockerfile, p, err)
			} else if ok {
				ignored = exclude
			}
		}
		return ignored
	}
}

// TestBinary_Static: the gateway built as the image builds it is statically
// linked and runs.
func TestBinary_Static(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("builds the gateway")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	bin := filepath.Join(t.TempDir(), "gateway")
	build := goCommand(t, ctx, "build", "-trimpath", "-ldflags=-s -w", "-o", bin, "./cmd/gateway")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("CGO_ENABLED=0 go build: %v\n%s", err, out)
	}

	f, err := elf.Open(bin)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if f.Section(".interp") != nil {
		t.Error("the binary has an .interp section: it is dynamically linked")
	}
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP || p.Type == elf.PT_DYNAMIC {
			t.Errorf("the binary has a %v program header: it is dynamically linked", p.Type)
		}
	}
	if libs, _ := f.ImportedLibraries(); len(libs) > 0 {
		t.Errorf("the binary needs shared libraries %v", libs)
	}

	run := exec.CommandContext(ctx, bin, "--help")
	run.Env = []string{} // --help needs no settings
	out, err := run.CombinedOutput()
	if err != nil {
		t.Fatalf("gateway --help: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), "migrate") {
		t.Errorf("gateway --help printed %q; want the usage", out)
	}
}

// ---------------------------------------------------------------------------
// Metrics: dashboard and alerts

var (
	metricNameRE = regexp.MustCompile(`\balipay_gateway_[a-zA-Z0-9_:]*`)
	selectorRE   = regexp.MustCompile(`\b([a-zA-Z_:][a-zA-Z0-9_:]*)\s*\{([^}]*)\}`)
	matcherRE    = regexp.MustCompile(`([a-zA-Z_][a-zA-Z0-9_]*)\s*(=~|!~|!=|=)\s*"((?:[^"\\]|\\.)*)"`)
	groupingRE   = regexp.MustCompile(`\b(?:by|without|on|ignoring|group_left|group_right)\s*\(([^)]*)\)`)
	plainAltRE   = regexp.MustCompile(`^[a-z0-9_]+(\|[a-z0-9_]+)*$`)
)

// lookupMetric returns the metric a series name belongs to (histograms
// export name_bucket, name_sum and name_count).
func lookupMetric(series string) (metric, string, bool) {
	for _, m := range metrics {
		if series == m.name {
			return m, "", m.typ != "histogram"
		}
		if m.typ == "histogram" {
			for _, suffix := range []string{"_bucket", "_sum", "_count"} {
				if series == m.name+suffix {
					return m, suffix, true
				}
			}
		}
	}
	return metric{}, "", false
}

// checkPromQL checks an expression's metric names, label names and known
// label values against metrics, and its brackets; it returns the metrics
// it uses.
func checkPromQL(t *testing.T, where, expr string) []string {
	t.Helper()
	// Brackets balance outside strings.
	var stack []rune
	quoted := false
	pairs := map[rune]rune{')': '(', ']': '[', '}': '{'}
	for i, r := range expr {
		switch {
		case r == '"' && (i == 0 || expr[i-1] != '\\'):
			quoted = !quoted
		case quoted:
		case r == '(' || r == '[' || r == '{':
			stack = append(stack, r)
		case pairs[r] != 0:
			if len(stack) == 0 || stack[len(stack)-1] != pairs[r] {
				t.Errorf("%s: unbalanced %q in %s", where, r, expr)
				return nil
			}
			stack = stack[:len(stack)-1]
		}
	}
	if quoted || len(stack) > 0 {
		t.Errorf("%s: unclosed string or bracket in %s", where, expr)
	}

	var used []string
	labels := slices.Clone(targetLabels)
	for _, name := range metricNameRE.FindAllString(expr, -1) {
		m, suffix, ok := lookupMetric(name)
		if !ok {
			t.Errorf("%s: unknown metric %s", where, name)
			continue
		}
		used = append(used, m.name)
		labels = append(labels, m.labels...)
		if suffix == "_bucket" {
			labels = append(labels, "le")
		}
	}
	for _, sel := range selectorRE.FindAllStringSubmatch(expr, -1) {
		allowed := slices.Clone(targetLabels)
		m, suffix, ok := lookupMetric(sel[1])
		if ok {
			allowed = append(allowed, m.labels...)
			if suffix == "_bucket" {
				allowed = append(allowed, "le")
			}
		} else if sel[1] != "up" {
			continue // reported above, or a function such as absent
		}
		for _, mt := range matcherRE.FindAllStringSubmatch(sel[2], -1) {
			label, op, value := mt[1], mt[2], mt[3]
			if !slices.Contains(allowed, label) {
				t.Errorf("%s: %s has no label %q", where, sel[1], label)
				continue
			}
			known := labelValues[label]
			if known == nil || (op != "=" && op != "=~" && op != "!=" && op != "!~") || !plainAltRE.MatchString(value) {
				continue
			}
			for _, v := range strings.Split(value, "|") {
				if !slices.Contains(known, v) {
					t.Errorf("%s: %s{%s}: %q is not a known value of %s (%v)", where, sel[1], mt[0], v, label, known)
				}
			}
		}
	}
	for _, g := range groupingRE.FindAllStringSubmatch(expr, -1) {
		for _, l := range strings.Split(g[1], ",") {
			if l = strings.TrimSpace(l); l != "" && !slices.Contains(labels, l) {
				t.Errorf("%s: groups by %q, a label of none of the metrics used", where, l)
			}
		}
	}
	return used
}

// metricsSource is where the gateway defines its metrics: metrics.go,
// and a file of its own for a feature's (reconcile.go, ...).
const metricsSource = "../internal/metrics/*.go"

// TestMetrics_MatchCode: metrics (above) names exactly the metrics that
// internal/metrics defines (Namespace ns, Name "..."), with their types.
func TestMetrics_MatchCode(t *testing.T) {
	t.Parallel()
	files, err := filepath.Glob(metricsSource)
	if err != nil {
		t.Fatal(err)
	}
	src := ""
	for _, f := range files {
		if !strings.HasSuffix(f, "_test.go") {
			src += string(readFile(t, f))
		}
	}
	defined := map[string]string{}
	re := regexp.MustCompile(`prometheus\.New(Counter|Gauge|Histogram)(?:Vec)?\(prometheus\.[A-Za-z]+Opts\{Namespace: ns, Name: "([a-z0-9_]+)"`)
	for _, m := range re.FindAllStringSubmatch(src, -1) {
		defined["alipay_gateway_"+m[2]] = strings.ToLower(m[1])
	}
	if len(defined) == 0 {
		t.Fatalf("%s: no metric definition found (is the check still reading it right?)", metricsSource)
	}
	for _, m := range metrics {
		if typ, ok := defined[m.name]; !ok || typ != m.typ {
			t.Errorf("metrics lists %s (%s); %s defines it as %q", m.name, m.typ, metricsSource, typ)
		}
		delete(defined, m.name)
	}
	for name := range defined {
		t.Errorf("%s defines %s, which metrics does not list", metricsSource, name)
	}
}

func TestDashboard_Metrics(t *testing.T) {
	t.Parallel()
	var dash map[string]any
	if err := json.Unmarshal(readFile(t, dashboardFile), &dash); err != nil {
		t.Fatalf("%s: %v", dashboardFile, err)
	}
	if digString(dash, "uid") == "" || digString(dash, "title") == "" {
		t.Error("dashboard has no uid or title")
	}
	used := map[string]bool{}
	ids := map[float64]bool{}
	for i, p := range digList(dash, "panels") {
		where := dashboardFile + " panel " + digString(p, "title")
		id, _ := dig(p, "id").(float64)
		if ids[id] {
			t.Errorf("%s: id %v used twice", where, id)
		}
		ids[id] = true
		if digMap(p, "gridPos") == nil {
			t.Errorf("panel %d: no gridPos", i)
		}
		if digString(p, "type") == "row" {
			continue
		}
		targets := digList(p, "targets")
		if len(targets) == 0 {
			t.Errorf("%s: no targets", where)
		}
		for _, tg := range targets {
			expr := digString(tg, "expr")
			if expr == "" {
				t.Errorf("%s: a target has no expr", where)
			}
			for _, m := range checkPromQL(t, where, expr) {
				used[m] = true
			}
		}
	}
	for _, v := range digList(dash, "templating", "list") {
		for _, q := range []string{digString(v, "definition"), digString(v, "query", "query")} {
			if strings.Contains(q, "alipay_gateway_") {
				for _, m := range checkPromQL(t, dashboardFile+" variable "+digString(v, "name"), q) {
					used[m] = true
				}
			}
		}
	}
	for _, m := range metrics {
		if !used[m.name] {
			t.Errorf("%s shows no panel of %s", dashboardFile, m.name)
		}
	}
}

var promDurationRE = regexp.MustCompile(`^([0-9]+(ms|s|m|h|d|w|y))+$`)

func TestAlerts_Rules(t *testing.T) {
	t.Parallel()
	var f struct {
		Groups []struct {
			Name  string `yaml:"name"`
			Rules []struct {
				Alert       string            `yaml:"alert"`
				Record      string            `yaml:"record"`
				Expr        string            `yaml:"expr"`
				For         string            `yaml:"for"`
				Labels      map[string]string `yaml:"labels"`
				Annotations map[string]string `yaml:"annotations"`
			} `yaml:"rules"`
		} `yaml:"groups"`
	}
	dec := yaml.NewDecoder(bytes.NewReader(readFile(t, alertsFile)))
	dec.KnownFields(true)
	if err := dec.Decode(&f); err != nil {
		t.Fatalf("%s: %v", alertsFile, err)
	}
	names := map[string]bool{}
	var exprs []string
	for _, g := range f.Groups {
		if g.Name == "" || len(g.Rules) == 0 {
			t.Errorf("group %q: no name or no rules", g.Name)
		}
		for _, r := range g.Rules {
			where := alertsFile + " " + r.Alert
			if r.Alert == "" || r.Record != "" {
				t.Errorf("%s: want alerting rules only (alert %q, record %q)", alertsFile, r.Alert, r.Record)
				continue
			}
			if names[r.Alert] {
				t.Errorf("%s: alert defined twice", where)
			}
			names[r.Alert] = true
			if r.For != "" && !promDurationRE.MatchString(r.For) {
				t.Errorf("%s: for %q is not a Prometheus duration", where, r.For)
			}
			if s := r.Labels["severity"]; s != "warning" && s != "critical" {
				t.Errorf("%s: severity %q; want warning or critical", where, s)
			}
			if r.Annotations["summary"] == "" || r.Annotations["description"] == "" {
				t.Errorf("%s: no summary or description annotation", where)
			}
			if len(checkPromQL(t, where, r.Expr)) == 0 && !strings.Contains(r.Expr, "up{") {
				t.Errorf("%s: uses none of the gateway's metrics", where)
			}
			exprs = append(exprs, strings.Join(strings.Fields(r.Expr), " "))
		}
	}

	// The alerts the gateway needs, by what their expressions test.
	for what, re := range map[string]string{
		"verification failures":     `alipay_gateway_refusals_total\{reason=~"[^"]*bad_signature[^"]*unknown_`,
		"no notification for long":  `alipay_gateway_last_notification_timestamp_seconds`,
		"failed backlog old":        `alipay_gateway_oldest_failed_notification_age_seconds.*> 3600`,
		"failed notifications":      `alipay_gateway_notifications_total\{outcome="failed"\}`,
		"database unavailable":      `reason="database_unavailable"`,
		"gateway down":              `^up\{[^}]*\} == 0$`,
		"p99 intake latency high":   `histogram_quantile\(0\.99, .*alipay_gateway_intake_duration_seconds_bucket`,
		"db pool nearly exhausted":  `state="acquired".*state="max"`,
		"message service connected": `alipay_gateway_websocket_connected`,
		"cert expiring in 30 days":  `alipay_gateway_cert_expiry_timestamp_seconds.*\) - time\(\) < 30 \* 24 \* 3600`,
		"cert expired":              `alipay_gateway_cert_expiry_timestamp_seconds.*\) - time\(\) < 0$`,
		"webhook dead letters":      `alipay_gateway_webhook_dead_deliveries`,
		"webhook backlog old":       `alipay_gateway_webhook_oldest_pending_seconds`,
		"webhook endpoint disabled": `alipay_gateway_webhook_endpoints_disabled`,
		"event feed held back":      `alipay_gateway_events_feed_lag_seconds`,
		"failed near retention":     `alipay_gateway_oldest_failed_notification_age_seconds.*alipay_gateway_retention_seconds\{what="failed_notifications"\}`,
		"batch recipients unknown":  `alipay_gateway_template_batch_sends_total\{result="unknown"\}`,
		"batch rate limited":        `alipay_gateway_template_batch_sends_total\{result="rate_limited"\}`,
		"batch stalled":             `alipay_gateway_template_batch_idle_seconds`,
		"batch authorization":       `alipay_gateway_template_batch_stopped_total\{reason=~?"authorization_cancelled`,
	} {
		found := false
		for _, e := range exprs {
			found = found || regexp.MustCompile(re).MatchString(e)
		}
		if !found {
			t.Errorf("no alert for %s (an expr matching %s)", what, re)
		}
	}
}

// ---------------------------------------------------------------------------
// Kubernetes

func TestK8s_Deployment(t *testing.T) {
	t.Parallel()
	objs := k8sObjects(t)
	const name = "alipay-notify-gateway"
	dep := objs["Deployment/"+name]
	cm := objs["ConfigMap/"+name]
	if dep == nil || cm == nil {
		t.Fatalf("Deployment/%s or ConfigMap/%s missing; have %v", name, name, slices.Sorted(maps.Keys(objs)))
	}
	if n := digInt(dep, "spec", "replicas"); n != 2 {
		t.Errorf("replicas %d; want 2", n)
	}
	pod := dig(dep, "spec", "template")
	spec := dig(pod, "spec")
	podLabels := digMap(pod, "metadata", "labels")
	if !labelsMatch(digMap(dep, "spec", "selector", "matchLabels"), podLabels) {
		t.Error("Deployment selector does not match its pod labels")
	}
	if dig(spec, "securityContext", "runAsNonRoot") != true || digInt(spec, "securityContext", "runAsUser") == 0 {
		t.Error("pod securityContext: want runAsNonRoot and a non-zero runAsUser")
	}
	if len(digList(spec, "topologySpreadConstraints")) == 0 && dig(spec, "affinity", "podAntiAffinity") == nil {
		t.Error("no topologySpreadConstraints or podAntiAffinity")
	}

	containers := digList(spec, "containers")
	if len(containers) != 1 {
		t.Fatalf("%d containers; want 1", len(containers))
	}
	c := containers[0]
	sc := digMap(c, "securityContext")
	if sc["readOnlyRootFilesystem"] != true || sc["allowPrivilegeEscalation"] != false ||
		!slices.Equal(digList(sc, "capabilities", "drop"), []any{"ALL"}) {
		t.Errorf("container securityContext %v; want readOnlyRootFilesystem, no privilege escalation, drop ALL", sc)
	}
	// The probes and the scrape go to the internal listener when the
	// ConfigMap sets INTERNAL_ADDR (HTTP_ADDR serves no /readyz or /metrics
	// then), else to HTTP_ADDR.
	ports := map[string]int{}
	for _, p := range digList(c, "ports") {
		ports[digString(p, "name")] = digInt(p, "containerPort")
	}
	if addr := digString(cm, "data", "HTTP_ADDR"); ports["http"] == 0 || addr != ":"+strconv.Itoa(ports["http"]) {
		t.Errorf("container port http %d, HTTP_ADDR %q: they differ", ports["http"], addr)
	}
	probePort := "http"
	internalAddr := digString(cm, "data", "INTERNAL_ADDR")
	if internalAddr != "" {
		probePort = "internal"
		if ports["internal"] == 0 || internalAddr != ":"+strconv.Itoa(ports["internal"]) {
			t.Errorf("container port internal %d, INTERNAL_ADDR %q: they differ", ports["internal"], internalAddr)
		}
	}
	for probe, want := range map[string]string{"readinessProbe": "/readyz", "livenessProbe": "/healthz", "startupProbe": "/healthz"} {
		if got := digString(c, probe, "httpGet", "path"); got != want {
			t.Errorf("%s path %q; want %q", probe, got, want)
		}
		if got := digString(c, probe, "httpGet", "port"); got != probePort {
			t.Errorf("%s port %q; want %q (INTERNAL_ADDR %q)", probe, got, probePort, internalAddr)
		}
	}
	if got := digString(pod, "metadata", "annotations", "prometheus.io/port"); got != "" && got != strconv.Itoa(ports[probePort]) {
		t.Errorf("prometheus.io/port %s; /metrics is on port %s (%d)", got, probePort, ports[probePort])
	}
	// Start-up may wait a minute for the database before migrating.
	if s := digInt(c, "startupProbe", "periodSeconds") * digInt(c, "startupProbe", "failureThreshold"); s < 90 {
		t.Errorf("startupProbe allows %ds; want at least 90s", s)
	}
	for _, kind := range []string{"requests", "limits"} {
		r := digMap(c, "resources", kind)
		if r["cpu"] == nil || r["memory"] == nil {
			t.Errorf("resources.%s: want cpu and memory", kind)
		}
	}

	// Graceful stop: preStop sleep + SHUTDOWN_TIMEOUT < grace period.
	sleep := time.Duration(digInt(c, "lifecycle", "preStop", "sleep", "seconds")) * time.Second
	if sleep <= 0 {
		t.Error("no preStop sleep")
	}
	grace := time.Duration(digInt(spec, "terminationGracePeriodSeconds")) * time.Second
	cmEnv := map[string]string{}
	for k, v := range digMap(cm, "data") {
		cmEnv[k] = digString(v)
	}
	if shutdown := shutdownTimeout(t, "ConfigMap", cmEnv); grace <= sleep+shutdown {
		t.Errorf("terminationGracePeriodSeconds %v <= preStop sleep %v + SHUTDOWN_TIMEOUT %v", grace, sleep, shutdown)
	}

	// Environment: the ConfigMap, and secrets by secretKeyRef.
	envFromCM := false
	for _, e := range digList(c, "envFrom") {
		envFromCM = envFromCM || digString(e, "configMapRef", "name") == name
	}
	if !envFromCM {
		t.Errorf("container does not take its environment from ConfigMap/%s", name)
	}
	for _, v := range []string{"DATABASE_URL", "OPS_API_TOKENS", "TOKEN_ENCRYPTION_KEY"} {
		found := false
		for _, e := range digList(c, "env") {
			if digString(e, "name") == v {
				ref := digString(e, "valueFrom", "secretKeyRef", "name")
				found = ref != "" && objs["Secret/"+ref] != nil
			}
		}
		if !found {
			t.Errorf("%s: not from a secretKeyRef to a Secret of secret.template.yaml", v)
		}
		if _, inCM := cmEnv[v]; inCM {
			t.Errorf("%s is a secret but is in the ConfigMap", v)
		}
	}

	// Files: a Secret mounted read-only at mountDir holding every file the
	// ConfigMap names.
	var secretName string
	for _, vm := range digList(c, "volumeMounts") {
		if digString(vm, "mountPath") != mountDir {
			continue
		}
		if dig(vm, "readOnly") != true {
			t.Errorf("%s is not mounted readOnly", mountDir)
		}
		for _, vol := range digList(spec, "volumes") {
			if digString(vol, "name") == digString(vm, "name") {
				secretName = digString(vol, "secret", "secretName")
			}
		}
	}
	secret := objs["Secret/"+secretName]
	if secret == nil {
		t.Fatalf("%s is not a Secret volume of secret.template.yaml", mountDir)
	}
	for k, v := range cmEnv {
		if !strings.HasSuffix(k, "_FILE") && k != "GATEWAY_CONFIG" {
			continue
		}
		for _, p := range strings.Split(v, ",") {
			base, ok := strings.CutPrefix(p, mountDir+"/")
			if _, inSecret := digMap(secret, "stringData")[base]; !ok || !inSecret {
				t.Errorf("ConfigMap %s=%s: not a file of Secret/%s at %s", k, p, secretName, mountDir)
			}
		}
	}

	// The Service and the PodDisruptionBudget select these pods.
	svc, pdb := objs["Service/"+name], objs["PodDisruptionBudget/"+name]
	if svc == nil || pdb == nil {
		t.Fatalf("Service/%s or PodDisruptionBudget/%s missing", name, name)
	}
	if !labelsMatch(digMap(svc, "spec", "selector"), podLabels) {
		t.Error("the Service does not select the gateway pods")
	}
	if digString(svc, "spec", "ports", 0, "targetPort") != "http" {
		t.Error("the Service does not target port http")
	}
	for _, p := range digList(svc, "spec", "ports") {
		if tp := digString(p, "targetPort"); internalAddr != "" && (tp == "internal" || tp == strconv.Itoa(ports["internal"])) {
			t.Error("the Service carries the internal port (probes, /metrics, pprof): keep it to the pod IP")
		}
	}
	if !labelsMatch(digMap(pdb, "spec", "selector", "matchLabels"), podLabels) || digInt(pdb, "spec", "minAvailable") != 1 {
		t.Error("the PodDisruptionBudget does not keep minAvailable 1 of the gateway pods")
	}
}

// labelsMatch says whether a non-empty selector selects labels.
func labelsMatch(selector, labels map[string]any) bool {
	if len(selector) == 0 {
		return false
	}
	for k, v := range selector {
		if labels[k] != v {
			return false
		}
	}
	return true
}

func TestK8s_Kustomization(t *testing.T) {
	t.Parallel()
	k := decodeYAML(t, filepath.Join(k8sDir, "kustomization.yaml"))[0]
	var resources []string
	for _, r := range digList(k, "resources") {
		resources = append(resources, digString(r))
		if _, err := os.Stat(filepath.Join(k8sDir, digString(r))); err != nil {
			t.Errorf("kustomization resource: %v", err)
		}
	}
	for _, want := range []string{"deployment.yaml", "service.yaml", "configmap.yaml", "pdb.yaml"} {
		if !slices.Contains(resources, want) {
			t.Errorf("kustomization does not list %s", want)
		}
	}
	if slices.Contains(resources, "secret.template.yaml") {
		t.Error("kustomization applies the Secret template (placeholders) over the real Secrets")
	}
}

var privateKeyRE = regexp.MustCompile(`-----BEGIN [A-Z ]*PRIVATE KEY-----`)

// TestK8s_SecretTemplate: the template holds placeholders, no real values,
// and no file anywhere here holds a private key.
func TestK8s_SecretTemplate(t *testing.T) {
	t.Parallel()
	secrets := 0
	for _, doc := range decodeYAML(t, filepath.Join(k8sDir, "secret.template.yaml")) {
		if digString(doc, "kind") != "Secret" {
			t.Errorf("secret.template.yaml holds a %s", digString(doc, "kind"))
			continue
		}
		secrets++
		if len(digMap(doc, "data")) > 0 {
			t.Errorf("Secret/%s: data (base64) hides what it holds; use stringData placeholders", digString(doc, "metadata", "name"))
		}
		for k, v := range digMap(doc, "stringData") {
			if s := digString(v); s != "" && s != "REPLACE_ME" {
				t.Errorf("Secret/%s: %s = %q; want the placeholder REPLACE_ME or empty", digString(doc, "metadata", "name"), k, s)
			}
		}
	}
	if secrets == 0 {
		t.Error("no Secret in secret.template.yaml")
	}
	for _, dir := range []string{".", configsDir} {
		_ = filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			if d.IsDir() {
				if dir == "." && (p == "dev" || p == "secrets") {
					return filepath.SkipDir
				}
				return nil
			}
			if data, err := os.ReadFile(p); err == nil && privateKeyRE.Match(data) {
				t.Errorf("%s holds a private key", p)
			}
			return nil
		})
	}
}

// ---------------------------------------------------------------------------
// docker compose and systemd

func TestCompose_Gateway(t *testing.T) {
	t.Parallel()
	doc := decodeYAML(t, composeFile)[0]
	services := digMap(doc, "services")
	gw, pg := digMap(services, "gateway"), digMap(services, "postgres")
	if gw == nil || pg == nil || !isGatewayService(gw) {
		t.Fatal("want services gateway (built from deploy/Dockerfile) and postgres")
	}
	if !strings.HasPrefix(digString(pg, "image"), "postgres:15") || digMap(pg, "healthcheck") == nil {
		t.Error("postgres: want image postgres:15 with a healthcheck")
	}
	if digString(gw, "depends_on", "postgres", "condition") != "service_healthy" {
		t.Error("gateway does not wait for postgres to be healthy")
	}
	if digString(gw, "build", "dockerfile") != "deploy/Dockerfile" || digString(gw, "build", "context") != ".." {
		t.Error("gateway: want build context .. (the repository) and dockerfile deploy/Dockerfile")
	}
	for _, s := range []map[string]any{gw, pg} {
		if r := digString(s, "restart"); r != "unless-stopped" && r != "always" && !strings.HasPrefix(r, "on-failure") {
			t.Errorf("restart policy %q", r)
		}
	}
	if dig(gw, "read_only") != true || !slices.Contains(digList(gw, "cap_drop"), any("ALL")) {
		t.Error("gateway: want read_only and cap_drop ALL")
	}
	mounted := false
	for _, v := range digList(gw, "volumes") {
		if digString(v, "target") == mountDir && dig(v, "read_only") == true && digString(v, "source") == "./secrets" {
			mounted = true
		}
	}
	if !mounted {
		t.Errorf("gateway: ./secrets is not mounted read-only at %s", mountDir)
	}
	env := composeEnv(t, gw)
	if !strings.Contains(env["DATABASE_URL"], "@postgres:5432/") {
		t.Errorf("gateway DATABASE_URL %q does not point at the postgres service", env["DATABASE_URL"])
	}
	active, _ := envFile(t, envExample)
	for k, v := range env {
		active[k] = v
	}
	grace := duration(t, "stop_grace_period", digString(gw, "stop_grace_period"))
	if shutdown := shutdownTimeout(t, envExample, active); grace <= shutdown {
		t.Errorf("stop_grace_period %v <= SHUTDOWN_TIMEOUT %v", grace, shutdown)
	}

	// Published on the host's loopback only; the internal listener, when
	// set, on every interface of the container (a published port reaches
	// the container's own address, not its loopback), and probed by the
	// healthcheck.
	for _, p := range digList(gw, "ports") {
		if !strings.HasPrefix(digString(p), "127.0.0.1:") {
			t.Errorf("gateway: port %q is published beyond the host's loopback", digString(p))
		}
	}
	probeAddr := active["HTTP_ADDR"]
	if a := active["INTERNAL_ADDR"]; a != "" {
		probeAddr = a
		if host, _, err := net.SplitHostPort(a); err != nil || host != "" {
			t.Errorf("gateway: INTERNAL_ADDR %q: want :PORT, reachable through the published port", a)
		}
	}
	_, port, _ := net.SplitHostPort(probeAddr)
	want := []any{"CMD", "/gateway", "healthcheck", "http://127.0.0.1:" + port + "/readyz"}
	if got := digList(gw, "healthcheck", "test"); !slices.Equal(got, want) {
		t.Errorf("gateway healthcheck %v; want %v (the listener of /readyz, %s)", got, want, probeAddr)
	}
}

func TestSystemd_Unit(t *testing.T) {
	t.Parallel()
	u := parseUnit(t, unitFile)
	svc := u["Service"]
	last := func(k string) string {
		if v := svc[k]; len(v) > 0 {
			return v[len(v)-1]
		}
		return ""
	}
	for k, want := range map[string]string{
		"NoNewPrivileges": "yes", "ProtectSystem": "strict", "ProtectHome": "yes", "PrivateTmp": "yes",
		"PrivateDevices": "yes", "ProtectKernelTunables": "yes", "ProtectKernelModules": "yes",
		"ProtectKernelLogs": "yes", "ProtectControlGroups": "yes", "RestrictNamespaces": "yes",
		"RestrictAddressFamilies": "AF_INET AF_INET6 AF_UNIX", "CapabilityBoundingSet": "",
		"MemoryDenyWriteExecute": "yes", "LockPersonality": "yes", "RestrictSUIDSGID": "yes",
		"RestrictRealtime": "yes", "SystemCallArchitectures": "native",
		"Restart": "on-failure", "KillSignal": "SIGTERM",
	} {
		if v, ok := svc[k]; !ok || last(k) != want {
			t.Errorf("[Service] %s=%q; want %q", k, v, want)
		}
	}
	if !slices.Contains(svc["SystemCallFilter"], "@system-service") {
		t.Errorf("SystemCallFilter %v; want @system-service", svc["SystemCallFilter"])
	}
	if last("DynamicUser") != "yes" && (last("User") == "" || last("User") == "root") {
		t.Error("want DynamicUser=yes or a dedicated User=")
	}
	if last("EnvironmentFile") == "" || !strings.Contains(last("ExecStart"), " serve") {
		t.Error("want an EnvironmentFile and ExecStart=... serve")
	}
	if len(u["Install"]["WantedBy"]) == 0 {
		t.Error("[Install] has no WantedBy")
	}
	// The EnvironmentFile is a copy of the env example; it overrides
	// Environment=.
	env := map[string]string{}
	for _, v := range svc["Environment"] {
		for _, w := range unitWords(v) {
			k, val, _ := strings.Cut(w, "=")
			env[k] = val
		}
	}
	active, _ := envFile(t, envExample)
	stop := duration(t, "TimeoutStopSec", last("TimeoutStopSec"))
	for _, e := range []map[string]string{env, active} {
		if shutdown := shutdownTimeout(t, unitFile, e); stop <= shutdown {
			t.Errorf("TimeoutStopSec %v <= SHUTDOWN_TIMEOUT %v", stop, shutdown)
		}
	}
}
