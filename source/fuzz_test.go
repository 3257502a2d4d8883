package source

import (
	"net/netip"
	"strings"
	"testing"
)

// FuzzURLPolicy: a URL the policy accepts is http(s) with a host and no
// user, and never a literal private address.
func FuzzURLPolicy(f *testing.F) {
	for _, s := range []string{"https://cloud.debian.org/images/x.qcow2", "http://127.0.0.1/x", "http://[::ffff:10.0.0.1]:80/", "file:///etc/passwd", "http://169.254.169.254/latest/meta-data", "HTTP://EXAMPLE.COM/x", "http://user:pw@host/x", "http://0x7f.1/", "http://[::7f00:1]/x", "http://[2002:a9fe:a9fe::]/x"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		u, err := CheckURL(raw, false)
		if err != nil {
			return
		}
		if u.Scheme != "http" && u.Scheme != "https" {
			t.Fatalf("accepted scheme %q in %q", u.Scheme, raw)
		}
		if u.Hostname() == "" {
			t.Fatalf("accepted %q without a host", raw)
		}
		if u.User != nil {
			t.Fatalf("accepted %q with a user", raw)
		}
		if a, err := netip.ParseAddr(strings.Trim(u.Hostname(), "[]")); err == nil && ForbiddenAddr(a) != "" {
			t.Fatalf("accepted %q, a %s", raw, ForbiddenAddr(a))
		}
	})
}
