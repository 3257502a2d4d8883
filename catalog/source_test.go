package catalog

import (
	"strings"
	"testing"
)

func TestFileName(t *testing.T) {
	cases := []struct{ name, url, want string }{
		{"cirros-0.6.3", "https://x/cirros-0.6.3-x86_64-disk.img", "cirros-0.6.3.img"},
		{"debian-12", "https://x/debian-12-genericcloud-amd64.qcow2", "debian-12.qcow2"},
		{"mine.qcow2", "https://x/a.qcow2?sig=1", "mine.qcow2"},
		{"thing", "https://x/download", "thing"},
	}
	for _, c := range cases {
		if got := FileName(c.name, c.url); got != c.want {
			t.Errorf("FileName(%q, %q) = %q, want %q", c.name, c.url, got, c.want)
		}
	}
}

func TestValidName(t *testing.T) {
	for _, ok := range []string{"ubuntu-24.04", "a", "x_y+z.qcow2"} {
		if err := ValidName(ok); err != nil {
			t.Errorf("ValidName(%q) = %v", ok, err)
		}
	}
	for _, bad := range []string{"", "../etc", "a/b", ".hidden", "a..b", "/abs", "a b", "x\x00"} {
		if err := ValidName(bad); err == nil {
			t.Errorf("ValidName(%q) = nil, want an error", bad)
		}
	}
}

func TestBuiltinLoads(t *testing.T) {
	c, err := Load("")
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := c.Get("cirros-0.6.3"); !ok || len(c.IDs()) < 5 {
		t.Fatalf("built-in catalog has %v", c.IDs())
	}
}

func TestEntryWithAnUnknownFormatIsRefused(t *testing.T) {
	e := Entry{ID: "x", URL: "https://example.com/x.img", Checksum: "sha256:00", Format: "img"}
	if _, err := New([]Entry{e}); err == nil || !strings.Contains(err.Error(), "qcow2, raw") {
		t.Fatalf("New with format img: %v, want an error naming the formats", err)
	}
	e.Format = "raw"
	if _, err := New([]Entry{e}); err != nil {
		t.Fatalf("New with format raw: %v", err)
	}
}
