package egress

import (
	"net/url"
	"strings"
	"testing"
)

func TestProxyFromFlagOrEnvironment(t *testing.T) {
	t.Setenv("HTTPS_PROXY", "http://env-proxy:3128")
	t.Setenv("HTTP_PROXY", "")
	t.Setenv("NO_PROXY", "mirror.lan,.internal.example")
	cases := []struct {
		flag, target, want string
	}{
		{"", "https://cloud-images.ubuntu.com/x.img", "http://env-proxy:3128"},
		{"", "http://cloud-images.ubuntu.com/x.img", ""}, // no HTTP_PROXY
		{"", "https://mirror.lan/x.img", ""},             // NO_PROXY
		{"http://u:p@flag-proxy:8080", "http://cloud-images.ubuntu.com/x.img", "http://u:p@flag-proxy:8080"},
		{"http://u:p@flag-proxy:8080", "https://a.internal.example/x.img", ""}, // NO_PROXY holds for --proxy too
		{"flag-proxy:8080", "https://127.0.0.1/x.img", ""},                     // loopback never
	}
	for _, tc := range cases {
		p, err := NewProxy(tc.flag)
		if err != nil || p == nil {
			t.Fatalf("NewProxy(%q): %v, %v", tc.flag, p, err)
		}
		u, _ := url.Parse(tc.target)
		got, err := p.For(u)
		if err != nil || (got == nil) != (tc.want == "") || (got != nil && got.String() != tc.want) {
			t.Errorf("--proxy %q, %s: proxy %v (%v); want %q", tc.flag, tc.target, got, err, tc.want)
		}
	}
	p, _ := NewProxy("http://u:secret@flag-proxy:8080")
	if !p.IsProxyAddr("flag-proxy:8080") || p.IsProxyAddr("env-proxy:3128") || strings.Contains(p.String(), "secret") {
		t.Errorf("proxy %q: want flag-proxy:8080 as its only address, and no password shown", p.String())
	}
	if p, _ := NewProxy("https://proxy.example"); !p.IsProxyAddr("proxy.example:443") {
		t.Errorf("an https proxy without a port is dialled on 443")
	}
	t.Setenv("HTTPS_PROXY", "")
	if p, err := NewProxy(""); p != nil || err != nil {
		t.Errorf("no proxy anywhere: %v, %v; want nil", p, err)
	}
}

func TestBadProxyNeverShowsPassword(t *testing.T) {
	for _, raw := range []string{"socks5://u:secret@p:1080", "http://u:secret@", "http://u:secret@p:port"} {
		_, err := NewProxy(raw)
		if err == nil || strings.Contains(err.Error(), "secret") {
			t.Errorf("NewProxy(%q): %v; want an error without the password", raw, err)
		}
	}
	for _, raw := range []string{"http://u:secret@p:3128", "u:secret@p:3128", "%%u:secret@"} {
		if got := Redact(raw); strings.Contains(got, "secret") {
			t.Errorf("Redact(%q) = %q", raw, got)
		}
	}
}
