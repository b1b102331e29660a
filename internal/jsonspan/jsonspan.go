// Package jsonspan finds the exact text of JSON values inside a JSON
// document, without decoding it: Alipay signs the text of a WebSocket
// message's data object as it was sent (spaces, key order, escapes), so the
// verifier must hash those bytes, not a re-encoding. Members and ValueEnd
// skip strings and their escapes, so a brace inside a string does not count.
package jsonspan

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"unicode/utf8"
)

// Members returns the members of the JSON object obj, each value as
// its exact text. It works on the text itself: strings and their escapes
// are skipped, so a brace inside a string does not count. It returns an
// error when obj is not one JSON object (whitespace around it allowed), or
// when a key appears twice: the two copies could be read differently by
// the signer and by us. It does not validate numbers and literals beyond
// their extent; call json.Valid first for that.
func Members(obj []byte) (map[string][]byte, error) {
	i := skipSpace(obj, 0)
	if i >= len(obj) || obj[i] != '{' {
		return nil, errors.New("not a JSON object")
	}
	out := map[string][]byte{}
	i = skipSpace(obj, i+1)
	if i < len(obj) && obj[i] == '}' {
		if skipSpace(obj, i+1) != len(obj) {
			return nil, errors.New("text after the object")
		}
		return out, nil
	}
	for {
		if i >= len(obj) || obj[i] != '"' {
			return nil, errors.New("expected a member name")
		}
		end, err := stringEnd(obj, i)
		if err != nil {
			return nil, err
		}
		key, err := memberName(obj[i:end])
		if err != nil {
			return nil, err
		}
		i = skipSpace(obj, end)
		if i >= len(obj) || obj[i] != ':' {
			return nil, errors.New("expected ':' after a member name")
		}
		i = skipSpace(obj, i+1)
		vend, err := ValueEnd(obj, i)
		if err != nil {
			return nil, err
		}
		if _, dup := out[key]; dup {
			return nil, fmt.Errorf("member %q appears twice", key)
		}
		out[key] = obj[i:vend]
		i = skipSpace(obj, vend)
		if i >= len(obj) {
			return nil, errors.New("unterminated object")
		}
		switch obj[i] {
		case ',':
			i = skipSpace(obj, i+1)
		case '}':
			if skipSpace(obj, i+1) != len(obj) {
				return nil, errors.New("text after the object")
			}
			return out, nil
		default:
			return nil, errors.New("expected ',' or '}' after a member")
		}
	}
}

// memberName decodes a quoted member name.
func memberName(quoted []byte) (string, error) {
	if bytes.IndexByte(quoted, '\\') < 0 && utf8.Valid(quoted) {
		return string(quoted[1 : len(quoted)-1]), nil
	}
	// Escapes, or bytes that are not UTF-8: decode as encoding/json does.
	var s string
	if err := json.Unmarshal(quoted, &s); err != nil {
		return "", errors.New("bad member name")
	}
	return s, nil
}

// ValueEnd returns the index just past the JSON value that starts at s[i]:
// for an object or an array, the index after its matching closing bracket,
// skipping strings and their escapes. Brackets must match.
func ValueEnd(s []byte, i int) (int, error) {
	if i >= len(s) {
		return 0, errors.New("expected a value")
	}
	switch s[i] {
	case '"':
		return stringEnd(s, i)
	case '{', '[':
		stack := []byte{s[i]}
		for j := i + 1; j < len(s); {
			switch c := s[j]; c {
			case '"':
				end, err := stringEnd(s, j)
				if err != nil {
					return 0, err
				}
				j = end
				continue
			case '{', '[':
				stack = append(stack, c)
			case '}', ']':
				open := stack[len(stack)-1]
				if (c == '}') != (open == '{') {
					return 0, errors.New("mismatched brackets")
				}
				stack = stack[:len(stack)-1]
				if len(stack) == 0 {
					return j + 1, nil
				}
			}
			j++
		}
		return 0, errors.New("unterminated object or array")
	case '}', ']', ',', ':':
		return 0, errors.New("expected a value")
	}
	j := i
	for j < len(s) {
		switch s[j] {
		case ',', '}', ']', ':', '"', '{', '[', ' ', '\t', '\r', '\n':
			if j == i {
				return 0, errors.New("expected a value")
			}
			return j, nil
		}
		j++
	}
	return j, nil
}

// stringEnd returns the index just past the string starting at s[i] ('"').
func stringEnd(s []byte, i int) (int, error) {
	for j := i + 1; j < len(s); j++ {
		switch s[j] {
		case '\\':
			j++ // skip the escaped byte; \uXXXX's digits are plain bytes
		case '"':
			return j + 1, nil
		}
	}
	return 0, errors.New("unterminated string")
}

func skipSpace(s []byte, i int) int {
	for i < len(s) {
		switch s[i] {
		case ' ', '\t', '\r', '\n':
			i++
		default:
			return i
		}
	}
	return i
}
