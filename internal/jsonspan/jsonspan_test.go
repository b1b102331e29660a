package jsonspan_test

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"

	"github.com/alipay-notify-gateway/gateway/internal/jsonspan"
)

func TestMembers(t *testing.T) {
	t.Parallel()
	t.Run("OK", func(t *testing.T) {
		m, err := jsonspan.Members([]byte(` { "a" : {"b":"}"} , "c\u0064":[1,{"x":"]"}], "e":"\\\"" ,"f":-1.5e3,"g":null } `))
		if err != nil {
			t.Fatal(err)
		}
		want := map[string]string{"a": `{"b":"}"}`, "cd": `[1,{"x":"]"}]`, "e": `"\\\""`, "f": `-1.5e3`, "g": `null`}
		if len(m) != len(want) {
			t.Fatalf("members = %q", m)
		}
		for k, v := range want {
			if string(m[k]) != v {
				t.Fatalf("%s = %q; want %q", k, m[k], v)
			}
		}
	})
	for _, bad := range []string{``, `[]`, `{`, `{"a"}`, `{"a":}`, `{"a":1,}`, `{"a":[}`, `{"a":{]}`, `{"a":"x}`,
		`{"a":1}x`, `{"a":1,"a":2}`, `{"\u0061":1,"a":2}`, `{"a":1 "b":2}`, `{"a"::1}`} {
		t.Run("Err/"+bad, func(t *testing.T) {
			if _, err := jsonspan.Members([]byte(bad)); err == nil {
				t.Errorf("%q: no error", bad)
			}
		})
	}
}

// FuzzMembers checks the span extractor against encoding/json: on any valid
// JSON object without a repeated key, every member's span is the exact text
// encoding/json keeps in a json.RawMessage; on anything else it never
// panics.
func FuzzMembers(f *testing.F) {
	for _, s := range []string{`{}`, `{"a":1}`, `{"header":{"appId":"1","msgApi":"a.b"},"content":{ "x" : "a } brace \" {" }}`,
		`{"a":"}\"{","b":[{"c":"]"}]}`, `{"a":{"b":{"c":[[[]]]}}}`, `{"\u0064ata":{}}`, `{"a":"\\"}`, `{"a":true,"b":false,"c":null}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := jsonspan.Members(b)
		var ref map[string]json.RawMessage
		if !json.Valid(b) || json.Unmarshal(b, &ref) != nil || ref == nil {
			return // only must not panic
		}
		if err != nil {
			if strings.Contains(err.Error(), "twice") {
				return
			}
			t.Fatalf("valid object %q refused: %v", b, err)
		}
		if len(m) != len(ref) {
			t.Fatalf("%q: %d members; encoding/json sees %d", b, len(m), len(ref))
		}
		for k, raw := range ref {
			if !bytes.Equal(m[k], raw) {
				t.Fatalf("%q: member %q = %q; encoding/json %q", b, k, m[k], raw)
			}
		}
	})
}
