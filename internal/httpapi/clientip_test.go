package httpapi

import (
	"net/http/httptest"
	"net/netip"
	"testing"
)

func TestClientKey(t *testing.T) {
	t.Parallel()
	proxies := []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("fd00::/8")}
	for _, c := range []struct {
		name    string
		remote  string
		xff     []string
		trusted []netip.Prefix
		want    string
	}{
		{"OKDirect", "203.0.113.7:5555", nil, nil, "203.0.113.7"},
		{"OKForwardedForIgnored", "203.0.113.7:5555", []string{"198.51.100.1"}, nil, "203.0.113.7"},
		{"OKUntrustedProxyIgnored", "203.0.113.7:5555", []string{"198.51.100.1"}, proxies, "203.0.113.7"},
		{"OKTrustedProxy", "10.1.2.3:5555", []string{"198.51.100.1"}, proxies, "198.51.100.1"},
		{"OKRightmostUntrusted", "10.1.2.3:5555", []string{"1.1.1.1, 198.51.100.1, 10.9.9.9"}, proxies, "198.51.100.1"},
		{"OKSeveralHeaders", "10.1.2.3:5555", []string{"1.1.1.1", "198.51.100.1,10.9.9.9"}, proxies, "198.51.100.1"},
		{"OKAllTrusted", "10.1.2.3:5555", []string{"10.4.4.4, 10.9.9.9"}, proxies, "10.4.4.4"},
		{"OKNoHeader", "10.1.2.3:5555", nil, proxies, "10.1.2.3"},
		{"OKGarbageStops", "10.1.2.3:5555", []string{"198.51.100.1, bogus, 10.9.9.9"}, proxies, "10.9.9.9"},
		{"OKMappedIPv4", "[::ffff:203.0.113.7]:5555", nil, nil, "203.0.113.7"},
		{"OKIPv6By64", "[2001:db8:1:2:aaaa::1]:5555", nil, nil, "2001:db8:1:2::/64"},
		{"OKIPv6SameHost", "[2001:db8:1:2:bbbb::9]:5555", nil, nil, "2001:db8:1:2::/64"},
		{"OKIPv6Forwarded", "[fd00::1]:5555", []string{"2001:db8:3:4::5"}, proxies, "2001:db8:3:4::/64"},
	} {
		t.Run(c.name, func(t *testing.T) {
			r := httptest.NewRequest("GET", "/alipay/auth/callback", nil)
			r.RemoteAddr = c.remote
			for _, v := range c.xff {
				r.Header.Add("X-Forwarded-For", v)
			}
			if got := clientKey(r, c.trusted); got != c.want {
				t.Fatalf("%s", got)
			}
		})
	}
}
