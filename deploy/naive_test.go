package deploy_test

import (
	"context"
	"crypto/sha256"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/alipay-notify-gateway/gateway/internal/notify"
	"github.com/alipay-notify-gateway/gateway/internal/pgtest"
	"github.com/alipay-notify-gateway/gateway/internal/testkit"
)

// make bench compares the gateway with a naive design: pgbench running
// deploy/dev/naive.sql, one transaction per notification, on the tables of
// deploy/dev/naive-schema.sql. Both files are written by hand, so these
// tests hold them to the code: the tables to the migrations, the statements
// to the gateway's own (internal/postgres), so that a naive transaction
// pays what the gateway pays for the same row.
const (
	naiveSchemaFile = "dev/naive-schema.sql"
	naiveScriptFile = "dev/naive.sql"
	postgresDir     = "../internal/postgres" // the gateway's statements
)

// naiveTables are the tables naive-schema.sql makes, each as the
// migrations make it.
var naiveTables = []string{"notifications", "mini_apps"}

// TestNaive_SchemaMatchesMigrations: the migrations and naive-schema.sql,
// applied into two schemas, give the naive tables the same columns (in
// order, with types, nullability, defaults and identity), constraints,
// indexes and storage options.
func TestNaive_SchemaMatchesMigrations(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	real := pgtest.New(t)
	naive := naiveSchema(t)
	for _, table := range naiveTables {
		t.Run(table, func(t *testing.T) {
			want := describeTable(t, ctx, real.Pool, table)
			got := describeTable(t, ctx, naive, table)
			for _, part := range []string{"column", "constraint", "index", "storage"} {
				w, g := want[part], got[part]
				for _, x := range w {
					if !slices.Contains(g, x) {
						t.Errorf("%s lacks the %s %s", naiveSchemaFile, part, x)
					}
				}
				for _, x := range g {
					if !slices.Contains(w, x) {
						t.Errorf("%s has the %s %s, which the migrations do not", naiveSchemaFile, part, x)
					}
				}
				if !t.Failed() && !slices.Equal(w, g) {
					t.Errorf("%s: the %ss are in another order:\n got  %q\n want %q", naiveSchemaFile, part, g, w)
				}
			}
		})
	}
}

// TestNaive_StatementsAreTheGateways: naive.sql is one transaction of two
// statements: the gateway's inbox insert (internal/postgres/inbox.go: the
// same columns, conflict target and conflict action) and one conditional
// state upsert of the real shape (internal/postgres/state.go: the upsert of
// the same table, with the same columns, conflict target, changes and
// ordering condition).
func TestNaive_StatementsAreTheGateways(t *testing.T) {
	t.Parallel()
	consts := goStringConsts(t, postgresDir)
	stmts := naiveStatements(t)
	if len(stmts) != 4 || !strings.EqualFold(stmts[0], "BEGIN") || !strings.EqualFold(stmts[3], "END") {
		t.Fatalf("%s: want BEGIN, the inbox insert, the state upsert, END; got %d statements: %q", naiveScriptFile, len(stmts), stmts)
	}

	inbox := upsertsOf(stmts[1])
	if len(inbox) != 1 || inbox[0].table != "notifications" {
		t.Fatalf("%s: the first statement is not one insert into notifications: %q", naiveScriptFile, stmts[1])
	}
	var gwInbox []upsert // the statement writes the events too, which the naive gateway has none of
	for _, u := range upsertsOf(consts["insertNotifications"]) {
		if u.table == "notifications" {
			gwInbox = append(gwInbox, u)
		}
	}
	if len(gwInbox) != 1 {
		t.Fatalf("%s: insertNotifications: want one insert into notifications, got %d", postgresDir, len(gwInbox))
	}
	inbox[0].compare(t, "the inbox insert", gwInbox[0])

	state := upsertsOf(stmts[2])
	if len(state) != 1 {
		t.Fatalf("%s: the second statement is not one state upsert: %q", naiveScriptFile, stmts[2])
	}
	var real []upsert
	for _, name := range []string{"grantAuthorizations", "cancelAuthorizations", "applyOrders", "applyAudits"} {
		if consts[name] == "" {
			t.Fatalf("%s: no const %s", postgresDir, name)
		}
		for _, u := range upsertsOf(consts[name]) {
			if u.table == state[0].table && u.action != "DO NOTHING" {
				real = append(real, u)
			}
		}
	}
	if len(real) != 1 {
		t.Fatalf("%s: want one conditional upsert of %s, got %d", postgresDir, state[0].table, len(real))
	}
	state[0].compare(t, "the state upsert", real[0])
	name := state[0].alias
	if name == "" {
		name = state[0].table
	}
	order := fmt.Sprintf("(%[1]s.event_at, %[1]s.event_notify_id) < (EXCLUDED.event_at, EXCLUDED.event_notify_id)", name)
	if !strings.Contains(state[0].action, order) {
		t.Errorf("%s: the state upsert's condition %q lacks the ordering %q", naiveScriptFile, state[0].action, order)
	}
}

// TestNaive_RowsLikeTheGateways: naive.sql runs on the naive tables and on
// the gateway's, and writes the columns (NULL or not) that the gateway
// writes for an audit notification of the same kind.
func TestNaive_RowsLikeTheGateways(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	script := naiveScript(t)
	naive := naiveSchema(t)
	if _, err := naive.Exec(ctx, script); err != nil {
		t.Fatalf("%s on %s's tables: %v", naiveScriptFile, naiveSchemaFile, err)
	}

	db := pgtest.New(t)
	if _, err := db.Pool.Exec(ctx, script); err != nil {
		t.Fatalf("%s on the migrated tables: %v", naiveScriptFile, err)
	}
	biz := `{"mini_app_id":"2099","bundle_id":"com.isv.mini2099","mini_app_version":"0.1.0","audit_reason":"JS错误",` +
		`"base_audit":"REJECT","promote_audit":"REJECT","base_audit_reason":{"memos":[]},"promote_audit_reason":{"memos":[]}}`
	digest := sha256.Sum256([]byte("gw-1"))
	d, err := testkit.Registry(t).Decide(&notify.Notification{
		AppID: "2021000000000001", NotifyID: "gw-1", Method: notify.MethodAuditRejected, UTCTimestamp: 1_700_000_000_000,
		BizContent: biz, Params: map[string]string{"notify_id": "gw-1", "biz_content": biz, "sign": "x"},
		Channel: notify.ChannelHTTP, ContentForm: "v1", ContentDigest: digest[:], ReceivedAt: time.Now(),
	})
	if err != nil {
		t.Fatal(err)
	}
	out, err := db.Ingest(ctx, d)
	if err != nil || out.Status != notify.StatusApplied {
		t.Fatalf("Ingest = %+v, %v; want applied", out, err)
	}
	for _, q := range []struct{ table, gateway string }{
		{"notifications", "notify_id = 'gw-1'"},
		{"mini_apps", "mini_app_id = '2099'"},
	} {
		gw := nullColumns(t, ctx, db.Pool, q.table, q.gateway)
		for _, conn := range []querier{db.Pool, naive} {
			if got := nullColumns(t, ctx, conn, q.table, "NOT ("+q.gateway+")"); !slices.Equal(got, gw) {
				t.Errorf("%s: the naive %s row has NULL in %v, the gateway's in %v", naiveScriptFile, q.table, got, gw)
			}
		}
	}
}

// querier is a pool or a connection.
type querier interface {
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
}

// naiveSchema applies naive-schema.sql into a fresh schema and returns a
// connection using it.
func naiveSchema(t *testing.T) *pgx.Conn {
	t.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, pgtest.NewSchema(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close(ctx) })
	if _, err := conn.Exec(ctx, string(readFile(t, naiveSchemaFile))); err != nil {
		t.Fatalf("%s: %v", naiveSchemaFile, err)
	}
	return conn
}

// describeTable returns a table's columns, constraints, indexes and
// storage options as comparable strings, free of its schema's name.
func describeTable(t *testing.T, ctx context.Context, q querier, table string) map[string][]string {
	t.Helper()
	queries := map[string]string{
		"column": `SELECT concat_ws(' ', column_name, data_type, CASE is_nullable WHEN 'NO' THEN 'NOT NULL' ELSE 'NULL' END,
				'DEFAULT ' || column_default, CASE is_identity WHEN 'YES' THEN 'IDENTITY ' || identity_generation END,
				'COLLATE ' || collation_name)
			FROM information_schema.columns WHERE table_schema = current_schema() AND table_name = $1 ORDER BY ordinal_position`,
		"constraint": `SELECT conname || ' ' || pg_get_constraintdef(oid) FROM pg_constraint
			WHERE conrelid = $1::regclass ORDER BY conname`,
		"index": `SELECT replace(indexdef, ' ' || quote_ident(schemaname) || '.', ' ') FROM pg_indexes
			WHERE schemaname = current_schema() AND tablename = $1 ORDER BY indexname`,
		"storage": `SELECT unnest(reloptions) FROM pg_class WHERE oid = $1::regclass ORDER BY 1`,
	}
	out := map[string][]string{}
	for part, sql := range queries {
		rows, err := q.Query(ctx, sql, table)
		if err != nil {
			t.Fatalf("%s of %s: %v", part, table, err)
		}
		got, err := pgx.CollectRows(rows, pgx.RowTo[string])
		if err != nil {
			t.Fatalf("%s of %s: %v", part, table, err)
		}
		out[part] = got
	}
	if len(out["column"]) == 0 {
		t.Fatalf("no table %s", table)
	}
	return out
}

// nullColumns names the columns that are NULL in the rows of table where
// cond holds (one row, or several alike).
func nullColumns(t *testing.T, ctx context.Context, q querier, table, cond string) []string {
	t.Helper()
	rows, err := q.Query(ctx, `SELECT DISTINCT key FROM `+table+` x, jsonb_each(to_jsonb(x)) WHERE `+cond+
		` AND value = 'null'::jsonb ORDER BY key`)
	if err != nil {
		t.Fatal(err)
	}
	got, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	n, err := q.Query(ctx, `SELECT 1 FROM `+table+` WHERE `+cond)
	if err != nil {
		t.Fatal(err)
	}
	if found, err := pgx.CollectRows(n, pgx.RowTo[int]); err != nil || len(found) == 0 {
		t.Fatalf("no row of %s where %s (%v)", table, cond, err)
	}
	return got
}

// naiveScript is naive.sql as Postgres can run it: pgbench's \set lines
// dropped, and the variables they set (each to the low end of its
// random() range) and :client_id replaced by values.
func naiveScript(t *testing.T) string {
	t.Helper()
	vars := map[string]string{"client_id": "0"}
	low := regexp.MustCompile(`^random\((\d+),`)
	var lines []string
	for _, line := range strings.Split(string(readFile(t, naiveScriptFile)), "\n") {
		if f := strings.Fields(line); len(f) >= 3 && f[0] == `\set` {
			m := low.FindStringSubmatch(f[2])
			if m == nil {
				t.Fatalf("%s: %q: want \\set NAME random(LOW, HIGH)", naiveScriptFile, line)
			}
			vars[f[1]] = m[1]
			continue
		}
		lines = append(lines, line)
	}
	script := strings.Join(lines, "\n")
	return regexp.MustCompile(`([^:]):([a-z_]+)`).ReplaceAllStringFunc(script, func(m string) string {
		if v, ok := vars[m[2:]]; ok {
			return m[:1] + v
		}
		return m
	})
}

// naiveStatements are naive.sql's statements, without comments, pgbench
// meta-commands, or their final semicolons, whitespace collapsed.
func naiveStatements(t *testing.T) []string {
	t.Helper()
	var b strings.Builder
	for _, line := range strings.Split(string(readFile(t, naiveScriptFile)), "\n") {
		if strings.HasPrefix(strings.TrimSpace(line), `\`) {
			continue
		}
		if i := strings.Index(line, "--"); i >= 0 && !strings.Contains(line[:i], "'") {
			line = line[:i]
		}
		b.WriteString(line + "\n")
	}
	var stmts []string
	quoted, start, text := false, 0, b.String()
	for i, c := range text {
		switch {
		case c == '\'':
			quoted = !quoted
		case c == ';' && !quoted:
			if s := normalizeSQL(text[start:i]); s != "" {
				stmts = append(stmts, s)
			}
			start = i + 1
		}
	}
	if s := normalizeSQL(text[start:]); s != "" {
		stmts = append(stmts, s)
	}
	return stmts
}

// normalizeSQL collapses whitespace, and drops it inside parentheses'
// edges, so that statements formatted differently compare equal.
func normalizeSQL(s string) string {
	s = strings.Join(strings.Fields(s), " ")
	return strings.NewReplacer("( ", "(", " )", ")").Replace(s)
}

// upsert is an INSERT ... ON CONFLICT.
type upsert struct {
	table, alias string
	columns      []string
	target       string // the conflict target: "(app_id, notify_id)"
	action       string // "DO NOTHING", or "DO UPDATE SET ... [WHERE ...]"
}

var (
	insertRE   = regexp.MustCompile(`INSERT INTO (\w+)(?: AS (\w+))? \(([^)]*)\)`)
	conflictRE = regexp.MustCompile(`ON CONFLICT (\([^)]*\)) (DO NOTHING|DO UPDATE SET )`)
)

// upsertsOf finds the inserts of a statement, each with its ON CONFLICT
// clause, which ends with the statement, at RETURNING, or at the
// parenthesis that closes the insert's WITH query.
func upsertsOf(sql string) []upsert {
	sql = normalizeSQL(sql)
	var out []upsert
	found := insertRE.FindAllStringSubmatchIndex(sql, -1)
	for i, m := range found {
		end := len(sql)
		if i+1 < len(found) {
			end = found[i+1][0]
		}
		u := upsert{table: sql[m[2]:m[3]], columns: strings.Split(strings.ReplaceAll(sql[m[6]:m[7]], " ", ""), ",")}
		if m[4] >= 0 {
			u.alias = sql[m[4]:m[5]]
		}
		rest := sql[m[1]:end]
		c := conflictRE.FindStringSubmatchIndex(rest)
		if c == nil {
			out = append(out, u)
			continue
		}
		u.target = rest[c[2]:c[3]]
		action := rest[c[4]:]
		depth := 0
	scan:
		for j := 0; j < len(action); j++ {
			switch {
			case action[j] == '(':
				depth++
			case action[j] == ')':
				if depth--; depth < 0 {
					action = action[:j]
					break scan
				}
			case depth == 0 && strings.HasPrefix(action[j:], " RETURNING "):
				action = action[:j]
				break scan
			}
		}
		u.action = strings.TrimSpace(action)
		out = append(out, u)
	}
	return out
}

// compare reports how u (naive.sql's) differs from the gateway's.
func (u upsert) compare(t *testing.T, what string, gw upsert) {
	t.Helper()
	if u.table != gw.table || u.alias != gw.alias {
		t.Errorf("%s: %s inserts into %s AS %s, the gateway into %s AS %s", naiveScriptFile, what, u.table, u.alias, gw.table, gw.alias)
	}
	if !slices.Equal(u.columns, gw.columns) {
		t.Errorf("%s: %s writes the columns\n %v\nthe gateway's\n %v", naiveScriptFile, what, u.columns, gw.columns)
	}
	if u.target != gw.target {
		t.Errorf("%s: %s's conflict target is %s, the gateway's %s", naiveScriptFile, what, u.target, gw.target)
	}
	if u.action != gw.action {
		t.Errorf("%s: %s does, on conflict,\n %s\nthe gateway\n %s", naiveScriptFile, what, u.action, gw.action)
	}
}

// goStringConsts returns the string constants declared in the Go package
// in dir (its non-test files), their values worked out from the literals
// and constants they are concatenated from.
func goStringConsts(t *testing.T, dir string) map[string]string {
	t.Helper()
	exprs := map[string]ast.Expr{}
	files, err := filepath.Glob(filepath.Join(dir, "*.go"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no Go files in %s (%v)", dir, err)
	}
	fset := token.NewFileSet()
	for _, name := range files {
		if strings.HasSuffix(name, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, name, nil, parser.SkipObjectResolution)
		if err != nil {
			t.Fatal(err)
		}
		for _, d := range f.Decls {
			if g, ok := d.(*ast.GenDecl); ok && g.Tok == token.CONST {
				for _, spec := range g.Specs {
					vs := spec.(*ast.ValueSpec)
					for i, id := range vs.Names {
						if i < len(vs.Values) {
							exprs[id.Name] = vs.Values[i]
						}
					}
				}
			}
		}
	}
	var eval func(e ast.Expr) (string, bool)
	eval = func(e ast.Expr) (string, bool) {
		switch e := e.(type) {
		case *ast.BasicLit:
			if e.Kind == token.STRING {
				s, err := strconv.Unquote(e.Value)
				return s, err == nil
			}
		case *ast.Ident:
			if x, ok := exprs[e.Name]; ok {
				return eval(x)
			}
		case *ast.ParenExpr:
			return eval(e.X)
		case *ast.BinaryExpr:
			if e.Op == token.ADD {
				a, okA := eval(e.X)
				b, okB := eval(e.Y)
				return a + b, okA && okB
			}
		}
		return "", false
	}
	out := map[string]string{}
	for name, e := range exprs {
		if s, ok := eval(e); ok {
			out[name] = s
		}
	}
	return out
}
