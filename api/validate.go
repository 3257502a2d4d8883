package api

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"slices"
	"strconv"
	"strings"

	"github.com/quantix/cloudimages/catalog"
	"github.com/quantix/cloudimages/fault"
)

// maxIDLen is the longest node, pool or image id the store keeps.
const maxIDLen = 64

// checkID checks an id given by a client: a name (letters, digits, '.',
// '_', '+', '-') of at most 64 characters, so it is safe in paths, file
// names and workflow ids.
func checkID(field, id string) error {
	if id == "" {
		return apiErr(fault.InvalidRequest, "%s is missing", field)
	}
	if len(id) > maxIDLen || catalog.ValidName(id) != nil {
		return apiErr(fault.InvalidRequest, "%s %q: use up to %d letters, digits, '.', '_', '+' and '-', starting with a letter or digit", field, id, maxIDLen)
	}
	return nil
}

// checkAddress checks a node agent's address: host:port, or an http(s)
// URL with a host, a port and nothing after it. The API and the workers
// send the node token to this address, so it must not be one that reaches
// something other than an agent on the cluster network: link-local
// (which holds the clouds' metadata services), metadata host names,
// multicast, broadcast and unspecified addresses are refused. Loopback and
// private addresses are where agents live, and stay allowed.
func checkAddress(addr string) error {
	if addr == "" {
		return apiErr(fault.InvalidRequest, "address is missing: give the node agent's host:port, e.g. 10.0.0.5:9090")
	}
	hostport := addr
	if strings.Contains(addr, "://") {
		u, err := url.Parse(addr)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || strings.Trim(u.Path, "/") != "" || u.User != nil || u.RawQuery != "" || u.Fragment != "" {
			return apiErr(fault.InvalidRequest, "address %q: give host:port (e.g. 10.0.0.5:9090) or http(s)://host:port with nothing after it", addr)
		}
		if u.Port() == "" {
			return apiErr(fault.InvalidRequest, "address %q has no port: give the agent's port, e.g. %s://%s:9090", addr, u.Scheme, u.Host)
		}
		hostport = u.Host
	}
	host, port, err := net.SplitHostPort(hostport)
	if err != nil || host == "" {
		return apiErr(fault.InvalidRequest, "address %q: want host:port, e.g. 10.0.0.5:9090", addr)
	}
	if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
		return apiErr(fault.InvalidRequest, "address %q: the port must be a number from 1 to 65535", addr)
	}
	if why := unsafeNodeHost(host); why != "" {
		return apiErr(fault.InvalidRequest, "address %q is %s: the node token is sent there, so give the agent's address on the cluster network (a private or loopback address, or its host name)", addr, why)
	}
	return nil
}

// metadataHosts are the names of cloud metadata services.
var metadataHosts = map[string]bool{
	"metadata.google.internal": true, "metadata.goog": true, "metadata": true,
	"instance-data": true, "instance-data.ec2.internal": true, "metadata.azure.com": true,
}

// metadataIPs are metadata services outside 169.254.0.0/16 (which is
// refused whole, as link-local).
var metadataIPs = []netip.Addr{
	netip.MustParseAddr("fd00:ec2::254"),   // AWS over IPv6
	netip.MustParseAddr("100.100.100.200"), // Alibaba Cloud
}

// unsafeNodeHost says why host may not be a node's, or "" when it may.
// Names are judged by their text only: they are resolved when they are
// used, and the agent's own checks do not depend on this one.
func unsafeNodeHost(host string) string {
	name := strings.TrimSuffix(strings.ToLower(host), ".")
	if metadataHosts[name] {
		return "a cloud metadata service"
	}
	ip, err := netip.ParseAddr(host)
	if err != nil {
		return ""
	}
	ip = ip.Unmap() // ::ffff:169.254.169.254 is 169.254.169.254
	switch {
	case slices.Contains(metadataIPs, ip.WithZone("")) || ip == netip.MustParseAddr("169.254.169.254"):
		return "a cloud metadata service"
	case ip.IsLinkLocalUnicast():
		return "link-local"
	case ip.IsMulticast():
		return "multicast"
	case ip.IsUnspecified():
		return "unspecified (it means every address, not one node)"
	case ip == netip.MustParseAddr("255.255.255.255"):
		return "broadcast"
	}
	return ""
}

// checkText bounds a free-text field such as a display name.
func checkText(field, v string, max int) error {
	if len(v) > max {
		return apiErr(fault.InvalidRequest, "%s is %d characters long: at most %d", field, len(v), max)
	}
	if strings.ContainsFunc(v, func(r rune) bool { return r < 0x20 || r == 0x7f }) {
		return apiErr(fault.InvalidRequest, "%s must not contain control characters", field)
	}
	return nil
}

// newID returns prefix followed by 12 random hex digits.
func newID(prefix string) string {
	b := make([]byte, 6)
	if _, err := rand.Read(b); err != nil {
		panic(fmt.Sprintf("crypto/rand: %v", err))
	}
	return prefix + hex.EncodeToString(b)
}

// some lists up to n items, and says how many more there are.
func some(items []string, n int) string {
	if len(items) == 0 {
		return "none"
	}
	if len(items) <= n {
		return strings.Join(items, ", ")
	}
	return fmt.Sprintf("%s and %d more", strings.Join(items[:n], ", "), len(items)-n)
}
