package httpapi

import (
	"net/http"
	"net/netip"
	"strings"
)

// clientKey returns the key a request's client is rate limited under: its
// IP address, IPv6 addresses by their /64 (one host's share). The client is
// the connection's remote address, unless that is one of trusted (the
// reverse proxies of TRUSTED_PROXIES): then it is the rightmost address of
// X-Forwarded-For that is not a trusted proxy, the one the nearest
// untrusted hop connected from (the addresses left of it are whatever the
// client claimed). An X-Forwarded-For entry that is not an address stops
// the walk at the proxy that appended it. Without trusted proxies,
// X-Forwarded-For is never read.
func clientKey(r *http.Request, trusted []netip.Prefix) string {
	addr, err := netip.ParseAddrPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr // not TCP (a test's pipe): one client
	}
	ip := addr.Addr().Unmap()
	if len(trusted) > 0 && isTrusted(ip, trusted) {
		ip = forwardedFor(r.Header.Values("X-Forwarded-For"), ip, trusted)
	}
	if ip.Is6() {
		p, _ := ip.Prefix(64)
		return p.String()
	}
	return ip.String()
}

// forwardedFor walks the X-Forwarded-For values from the right, from proxy,
// past the trusted proxies, and returns the first address that is not one.
func forwardedFor(values []string, proxy netip.Addr, trusted []netip.Prefix) netip.Addr {
	var hops []string
	for _, v := range values {
		hops = append(hops, strings.Split(v, ",")...)
	}
	client := proxy
	for i := len(hops) - 1; i >= 0; i-- {
		a, err := netip.ParseAddr(strings.TrimSpace(hops[i]))
		if err != nil {
			return client
		}
		client = a.Unmap()
		if !isTrusted(client, trusted) {
			return client
		}
	}
	return client
}

func isTrusted(ip netip.Addr, trusted []netip.Prefix) bool {
	for _, p := range trusted {
		if p.Contains(ip) {
			return true
		}
	}
	return false
}
