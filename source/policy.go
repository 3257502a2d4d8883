package source

import (
	"net/netip"
	"net/url"
	"strings"

	"github.com/quantix/cloudimages/fault"
)

// MaxURLLen is the longest source URL accepted (and the longest the store
// keeps).
const MaxURLLen = 2048

// CheckURL is the URL policy applied before anything is dialled: http or
// https, a host, no user or password (they would be stored and shown with
// the image), and — unless allowPrivate — a literal address that
// ForbiddenAddr accepts. Names ("localhost" included) are judged by the
// address they resolve to, when the node agent dials.
func CheckURL(raw string, allowPrivate bool) (*url.URL, error) {
	if len(raw) > MaxURLLen {
		return nil, fault.New(fault.InvalidRequest, "url is %d characters long: at most %d", len(raw), MaxURLLen)
	}
	u, err := url.Parse(raw)
	if err != nil {
		return nil, fault.New(fault.InvalidRequest, "url %q is not a URL: %v", raw, err)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return nil, fault.New(fault.URLForbidden, "url %q: only http and https URLs can be downloaded", u.Redacted())
	}
	if u.User != nil {
		return nil, fault.New(fault.InvalidRequest, "url %q carries a user or password: those would be stored and shown with the image; use a URL without them", u.Redacted())
	}
	host := u.Hostname()
	if host == "" {
		return nil, fault.New(fault.InvalidRequest, "url %q has no host", u.Redacted())
	}
	if allowPrivate {
		return u, nil
	}
	if a, err := netip.ParseAddr(strings.Trim(host, "[]")); err == nil {
		if why := ForbiddenAddr(a); why != "" {
			return nil, fault.New(fault.URLForbidden, "url %q: %s is %s; %s", u.Redacted(), a, why, PublicOnly)
		}
	}
	return u, nil
}

// PublicOnly says what to do about a refused address.
const PublicOnly = "the node agent only downloads from public addresses unless started with --allow-private-networks"

// blockedPrefixes are the IPv4 ranges that netip's predicates do not
// cover: "this network", carrier-grade NAT, IETF protocol assignments,
// benchmark testing, reserved, and broadcast.
var blockedPrefixes = []netip.Prefix{
	netip.MustParsePrefix("0.0.0.0/8"),
	netip.MustParsePrefix("100.64.0.0/10"),
	netip.MustParsePrefix("192.0.0.0/24"),
	netip.MustParsePrefix("198.18.0.0/15"),
	netip.MustParsePrefix("240.0.0.0/4"),
}

// siteLocal is IPv6's deprecated site-local range: private in practice.
var siteLocal = netip.MustParsePrefix("fec0::/10")

// ForbiddenAddr says why an address may not be dialled, or "" when it
// may: loopback, private (RFC 1918, IPv6 ULA and site-local), link-local
// (cloud metadata at 169.254.169.254 among them), multicast, unspecified
// and reserved ranges. An IPv6 address that carries an IPv4 address
// (mapped, compatible, NAT64, 6to4, Teredo) is judged by that too, since
// the packets may end up there.
func ForbiddenAddr(a netip.Addr) string {
	a = a.Unmap()
	if a.Is6() {
		for _, v4 := range embeddedIPv4(a) {
			if why := ForbiddenAddr(v4); why != "" {
				return why + " (" + v4.String() + " inside " + a.String() + ")"
			}
		}
	}
	switch {
	case a.IsLoopback():
		return "a loopback address"
	case a.IsPrivate(), siteLocal.Contains(a):
		return "a private address"
	case a.IsLinkLocalUnicast():
		return "a link-local address (cloud metadata services live there)"
	case a.IsMulticast(), a.IsLinkLocalMulticast(), a.IsInterfaceLocalMulticast():
		return "a multicast address"
	case a.IsUnspecified():
		return "an unspecified address"
	}
	for _, p := range blockedPrefixes {
		if p.Contains(a) {
			return "a reserved or carrier-grade NAT address"
		}
	}
	return ""
}

var (
	compatible = netip.MustParsePrefix("::/96")           // IPv4-compatible (deprecated): ::a.b.c.d
	translated = netip.MustParsePrefix("::ffff:0:0:0/96") // IPv4-translated (SIIT): ::ffff:0:a.b.c.d
	nat64      = netip.MustParsePrefix("64:ff9b::/96")    // well-known NAT64 prefix
	nat64Local = netip.MustParsePrefix("64:ff9b:1::/48")  // local-use NAT64 prefix
	sixToFour  = netip.MustParsePrefix("2002::/16")       // 6to4: 2002:a.b.c.d::/48
	teredo     = netip.MustParsePrefix("2001::/32")       // Teredo: client address inverted in the last 32 bits
)

// embeddedIPv4 returns the IPv4 addresses an IPv6 address carries by one
// of the standard embeddings. (::ffff:a.b.c.d is unmapped before.)
func embeddedIPv4(a netip.Addr) []netip.Addr {
	b := a.As16()
	last := netip.AddrFrom4([4]byte{b[12], b[13], b[14], b[15]})
	switch {
	case a.IsLoopback() || a.IsUnspecified(): // ::1 and ::, not IPv4-compatible
		return nil
	case compatible.Contains(a), translated.Contains(a), nat64.Contains(a), nat64Local.Contains(a):
		// NAT64 translators of the local-use prefix take a /96 of it and
		// put the IPv4 address last, as with the well-known prefix.
		return []netip.Addr{last}
	case sixToFour.Contains(a):
		return []netip.Addr{netip.AddrFrom4([4]byte{b[2], b[3], b[4], b[5]})}
	case teredo.Contains(a):
		return []netip.Addr{netip.AddrFrom4([4]byte{^b[12], ^b[13], ^b[14], ^b[15]})}
	}
	return nil
}
