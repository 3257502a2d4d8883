package checksum

import (
	"encoding"
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

// TestHashVectors runs the published test vectors (FIPS 180-2 "abc" and
// the empty message) through our API: NewHash picks the algorithm by name,
// Of formats the result so that Parse reads it back, and a hash saved
// midway and restored (as a resumed download does) ends the same.
func TestHashVectors(t *testing.T) {
	cases := []struct{ algo, msg, hex string }{
		{"sha256", "", "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"},
		{"sha256", "abc", "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"},
		{"sha512", "", "cf83e1357eefb8bdf1542850d66d8007d620e4050b5715dc83f4a921d36ce9ce47d0d13c5d85f2b0ff8318d2877eec2f63b931bd47417a81a538327af927da3e"},
		{"sha512", "abc", "ddaf35a193617abacc417349ae20413112e6fa4e89a97ea20a9eeee64b55d39a2192992a274fc1a836ba3c23a3feebbd454d4423643ce80e2a9ac94fa54ca49f"},
	}
	for _, c := range cases {
		want := c.algo + ":" + c.hex
		h := NewHash(c.algo)
		h.Write([]byte(c.msg))
		if got := Of(c.algo, h); got != want {
			t.Errorf("Of(%s, %q) = %s, want %s", c.algo, c.msg, got, want)
		}
		sum, err := Parse(strings.ToUpper(want))
		if err != nil || sum.String() != want {
			t.Errorf("Parse(upper case %s) = %v, %v", want, sum, err)
			continue
		}
		// Save the state after the first byte, restore it into a fresh
		// hash of the parsed sum's algorithm, finish there.
		first := NewHash(c.algo)
		first.Write([]byte(c.msg[:min(1, len(c.msg))]))
		state, err := first.(encoding.BinaryMarshaler).MarshalBinary()
		if err != nil {
			t.Fatal(err)
		}
		resumed := sum.NewHash()
		if err := resumed.(encoding.BinaryUnmarshaler).UnmarshalBinary(state); err != nil {
			t.Fatalf("%s: restore a saved state: %v", c.algo, err)
		}
		resumed.Write([]byte(c.msg[min(1, len(c.msg)):]))
		if got := Of(sum.Algo, resumed); got != want {
			t.Errorf("%s of %q resumed after one byte = %s, want %s", c.algo, c.msg, got, want)
		}
	}
}

func TestParseTrimsAndNormalises(t *testing.T) {
	hex := strings.Repeat("0F", 32)
	s, err := Parse("  SHA256:" + hex + "\n")
	if err != nil || s.Algo != "sha256" || s.Hex != strings.ToLower(hex) {
		t.Fatalf("Parse with spaces and upper case = %+v, %v", s, err)
	}
	// A sha512 digest under sha256 (and the other way round) is refused
	// with a message that says how long the digest must be.
	if _, err := Parse("sha256:" + strings.Repeat("0", 128)); err == nil || !strings.Contains(err.Error(), "64 hex digits") {
		t.Errorf("sha256 with a 128-digit digest: %v", err)
	}
}
