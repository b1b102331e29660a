package console

// HasMessage reports whether key is in the message table in both
// languages.
func HasMessage(key string) bool {
	m, ok := messages[key]
	return ok && m[zh] != "" && m[en] != ""
}

// NavKeys are the navigation's message keys.
func NavKeys() []string {
	var keys []string
	for _, p := range pages {
		keys = append(keys, "nav."+p.name)
	}
	return keys
}
