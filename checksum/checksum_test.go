package checksum

import (
	"crypto/sha256"
	"strings"
	"testing"
)

func TestParse(t *testing.T) {
	good := "sha256:" + strings.Repeat("aB", 32)
	s, err := Parse(good)
	if err != nil || s.Algo != "sha256" || s.Hex != strings.Repeat("ab", 32) {
		t.Fatalf("Parse(%q) = %+v, %v", good, s, err)
	}
	if s.String() != "sha256:"+strings.Repeat("ab", 32) {
		t.Fatalf("String() = %q", s.String())
	}
	if _, err := Parse("sha512:" + strings.Repeat("0", 128)); err != nil {
		t.Fatalf("sha512: %v", err)
	}
	for _, bad := range []string{"", "sha256", "md5:" + strings.Repeat("0", 32), "sha256:" + strings.Repeat("0", 63),
		"sha256:" + strings.Repeat("g", 64), "sha512:" + strings.Repeat("0", 64), ":abc"} {
		if _, err := Parse(bad); err == nil {
			t.Errorf("Parse(%q) = nil error, want one", bad)
		}
	}
}

func TestOf(t *testing.T) {
	h := NewHash("sha256")
	h.Write([]byte("abc"))
	want := sha256.Sum256([]byte("abc"))
	s, err := Parse(Of("sha256", h))
	if err != nil || s.Hex != "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad" || want[0] != 0xba {
		t.Fatalf("Of = %+v, %v", s, err)
	}
}
