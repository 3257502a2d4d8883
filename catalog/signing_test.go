package catalog_test

import (
	"slices"
	"strings"
	"testing"

	"github.com/quantix/cloudimages/catalog"
	"github.com/quantix/cloudimages/signature"
)

// The built-in entries pin real keys: each pinned fingerprint is one of a
// key shipped in the binary (checked there against its key material), or
// one of the two the operator supplies with --keyring.
func TestBuiltinEntriesPinShippedOrOperatorKeys(t *testing.T) {
	shipped, err := signature.Embedded()
	if err != nil {
		t.Fatal(err)
	}
	operator := []string{signature.Ubuntu, signature.DebianCDKey}
	for _, e := range catalog.Builtin {
		for _, fp := range e.SigningKeys {
			if !shipped.Has(fp) && !slices.Contains(operator, fp) {
				t.Errorf("entry %q pins %s, which is neither shipped nor a known operator-supplied key", e.ID, fp)
			}
		}
	}
	// The vendors whose keys ship are verified out of the box.
	want := map[string]string{"fedora-41": signature.Fedora41, "rocky-9": signature.Rocky9, "almalinux-9": signature.AlmaLinux9,
		"ubuntu-24.04": signature.Ubuntu, "ubuntu-22.04": signature.Ubuntu, "debian-12": signature.DebianCDKey}
	cat, err := catalog.Load("")
	if err != nil {
		t.Fatal(err)
	}
	for id, fp := range want {
		e, ok := cat.Get(id)
		if !ok || !e.Signed() || !slices.Equal(e.SigningKeys, []string{fp}) {
			t.Errorf("entry %q: signed %v, keys %v; want signed by %s", id, e.Signed(), e.SigningKeys, fp)
		}
	}
	if e, _ := cat.Get("fedora-41"); !e.Clearsigned || e.SignatureURL != "" {
		t.Errorf("fedora-41 is clearsigned, not detached: %+v", e)
	}
	if e, _ := cat.Get("ubuntu-24.04"); !strings.HasSuffix(e.SignatureURL, "/SHA256SUMS.gpg") {
		t.Errorf("ubuntu-24.04 signature_url %q, want SHA256SUMS.gpg", e.SignatureURL)
	}
}

func TestSigningFieldsAreValidated(t *testing.T) {
	base := catalog.Entry{ID: "x", URL: "https://example.com/x.qcow2", ChecksumURL: "https://example.com/SHA256SUMS"}
	cases := []struct {
		name string
		edit func(*catalog.Entry)
		says string // "" means valid
	}{
		{"unsigned", func(*catalog.Entry) {}, ""},
		{"detached", func(e *catalog.Entry) {
			e.SignatureURL, e.SigningKeys = "https://example.com/SHA256SUMS.gpg", []string{signature.Ubuntu}
		}, ""},
		{"clearsigned, fingerprint as gpg prints it", func(e *catalog.Entry) {
			e.Clearsigned, e.SigningKeys = true, []string{"466C F2D8 B60B C305 7AA9  453E D062 2462 E99D 6AD1"}
		}, ""},
		{"both ways", func(e *catalog.Entry) {
			e.Clearsigned, e.SignatureURL, e.SigningKeys = true, "https://example.com/s.gpg", []string{signature.Ubuntu}
		}, "both signature_url and clearsigned"},
		{"signed without keys", func(e *catalog.Entry) { e.Clearsigned = true }, "pins no key"},
		{"keys without a signature", func(e *catalog.Entry) { e.SigningKeys = []string{signature.Ubuntu} }, "says nothing is signed"},
		{"short key id", func(e *catalog.Entry) {
			e.Clearsigned, e.SigningKeys = true, []string{"7DB87C81"}
		}, "40 hex digits"},
		{"signature without checksum file", func(e *catalog.Entry) {
			e.ChecksumURL, e.Checksum = "", "sha256:"+strings.Repeat("a", 64)
			e.SignatureURL, e.SigningKeys = "https://example.com/s.gpg", []string{signature.Ubuntu}
		}, "no checksum_url"},
		{"signature_url not http", func(e *catalog.Entry) {
			e.SignatureURL, e.SigningKeys = "file:///etc/passwd", []string{signature.Ubuntu}
		}, "http(s) URL"},
	}
	for _, c := range cases {
		e := base
		c.edit(&e)
		cat, err := catalog.New([]catalog.Entry{e})
		switch {
		case c.says == "" && err != nil:
			t.Errorf("%s: %v", c.name, err)
		case c.says == "":
			if got, _ := cat.Get("x"); len(e.SigningKeys) > 0 && got.SigningKeys[0] != strings.ToUpper(strings.ReplaceAll(e.SigningKeys[0], " ", "")) {
				t.Errorf("%s: keys %v, want them normalized", c.name, got.SigningKeys)
			}
		case err == nil || !strings.Contains(err.Error(), c.says):
			t.Errorf("%s: %v, want an error saying %q", c.name, err, c.says)
		}
	}
}
