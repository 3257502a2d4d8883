package source

import (
	"net/netip"
	"testing"

	"github.com/quantix/cloudimages/fault"
)

func TestForbiddenAddresses(t *testing.T) {
	forbidden := []string{
		"127.0.0.1", "127.9.9.9", "::1", "10.0.0.1", "172.16.5.4", "192.168.1.1",
		"169.254.169.254", "169.254.0.1", "fe80::1", "fc00::1", "fd12:3456::1",
		"100.64.0.1", "100.127.255.254", "0.0.0.0", "::", "224.0.0.1", "ff02::1",
		"255.255.255.255", "240.0.0.1", "198.18.0.1", "192.0.0.8",
		"::ffff:127.0.0.1", "::ffff:169.254.169.254", "64:ff9b::a9fe:a9fe", "64:ff9b::7f00:1",
	}
	allowed := []string{"8.8.8.8", "1.1.1.1", "91.189.91.38", "2a00:1450:4001::200e", "100.128.0.1", "172.32.0.1", "64:ff9b::808:808"}
	for _, s := range forbidden {
		if ForbiddenAddr(netip.MustParseAddr(s)) == "" {
			t.Errorf("%s is allowed; want forbidden", s)
		}
	}
	for _, s := range allowed {
		if why := ForbiddenAddr(netip.MustParseAddr(s)); why != "" {
			t.Errorf("%s is forbidden (%s); want allowed", s, why)
		}
	}
}

// TestIPv6FormsThatEmbedIPv4: an IPv6 address that carries an internal
// IPv4 address is refused as that address would be; the same forms
// carrying a public one pass.
func TestIPv6FormsThatEmbedIPv4(t *testing.T) {
	cases := []struct {
		form, addr string
		forbidden  bool
	}{
		{"IPv4-compatible loopback", "::7f00:1", true},
		{"IPv4-compatible metadata", "::a9fe:a9fe", true},
		{"IPv4-compatible public", "::808:808", false},
		{"IPv4-mapped private", "::ffff:10.1.2.3", true},
		{"IPv4-translated loopback", "::ffff:0:7f00:1", true},
		{"IPv4-translated metadata", "::ffff:0:a9fe:a9fe", true},
		{"IPv4-translated public", "::ffff:0:808:808", false},
		{"NAT64 well-known metadata", "64:ff9b::a9fe:a9fe", true},
		{"NAT64 local-use /96 loopback", "64:ff9b:1::7f00:1", true},
		{"NAT64 local-use /96 metadata", "64:ff9b:1:ab:cd:ef:a9fe:a9fe", true},
		{"NAT64 local-use public", "64:ff9b:1::808:808", false},
		{"6to4 loopback", "2002:7f00:1::1", true},
		{"6to4 metadata", "2002:a9fe:a9fe::", true},
		{"6to4 private", "2002:c0a8:101::1", true},
		{"6to4 public", "2002:808:808::1", false},
		{"Teredo client loopback", "2001:0:4136:e378:8000:63bf:80ff:fffe", true}, // ^7f000001
		{"Teredo client metadata", "2001:0:4136:e378:8000:63bf:5601:5601", true}, // ^a9fea9fe
		{"Teredo client public", "2001:0:4136:e378:8000:63bf:f7f7:f7f7", false},  // ^08080808
		{"site-local", "fec0::1", true},
		{"site-local upper", "feff::1", true},
	}
	for _, c := range cases {
		why := ForbiddenAddr(netip.MustParseAddr(c.addr))
		if (why != "") != c.forbidden {
			t.Errorf("%s %s: forbidden = %q, want forbidden %v", c.form, c.addr, why, c.forbidden)
		}
		_, err := CheckURL("http://["+c.addr+"]/x.img", false)
		if c.forbidden && codeOf(err) != fault.URLForbidden {
			t.Errorf("%s: CheckURL = %v, want url_forbidden", c.form, err)
		}
	}
}

func TestCheckURL(t *testing.T) {
	cases := []struct {
		url          string
		allowPrivate bool
		code         string
	}{
		{"https://cloud.debian.org/images/x.qcow2", false, ""},
		{"http://127.0.0.1:8080/x.img", true, ""},
		{"http://127.0.0.1:8080/x.img", false, fault.URLForbidden},
		{"http://[::ffff:169.254.169.254]/latest", false, fault.URLForbidden},
		{"file:///etc/passwd", true, fault.URLForbidden},
		{"ftp://a.example/x.img", true, fault.URLForbidden},
		{"https:///x.img", true, fault.InvalidRequest},
		{"https://user:secret@a.example/x.img", true, fault.InvalidRequest},
		{"https://user@a.example/x.img", true, fault.InvalidRequest},
		{"https://a.example/%zz", true, fault.InvalidRequest},
		{"https://a.example/" + string(make([]byte, MaxURLLen)), true, fault.InvalidRequest},
	}
	for _, c := range cases {
		_, err := CheckURL(c.url, c.allowPrivate)
		if got := codeOf(err); got != c.code {
			t.Errorf("CheckURL(%.60q, %v) = %v, want code %q", c.url, c.allowPrivate, err, c.code)
		}
	}
}

// codeOf is the contract code of err, "" for none.
func codeOf(err error) string {
	if err == nil {
		return ""
	}
	return fault.CodeOf(err)
}
