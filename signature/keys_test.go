package signature_test

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/ProtonMail/go-crypto/openpgp"

	"github.com/quantix/cloudimages/signature"
)

// The shipped keys are the vendors' real keys: each file's fingerprint,
// computed from its key material, is the one pinned for it, and the
// README lists the same.
func TestShippedKeysHaveThePinnedFingerprints(t *testing.T) {
	files, err := filepath.Glob("keys/RPM-GPG-KEY-*")
	if err != nil || len(files) == 0 {
		t.Fatalf("no keys in keys/: %v", err)
	}
	if len(files) != len(signature.Shipped) {
		t.Errorf("%d key files, %d pinned in Shipped", len(files), len(signature.Shipped))
	}
	readme, err := os.ReadFile("keys/README.md")
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		fh, err := os.Open(f)
		if err != nil {
			t.Fatal(err)
		}
		list, err := openpgp.ReadArmoredKeyRing(fh)
		fh.Close()
		if err != nil || len(list) != 1 {
			t.Errorf("%s: %d keys, %v; want one public key", f, len(list), err)
			continue
		}
		name := filepath.Base(f)
		got := signature.Fingerprint(list[0])
		if want := signature.Shipped[name]; got != want {
			t.Errorf("%s has fingerprint %s, pinned %q", name, got, want)
		}
		row := regexp.MustCompile(`(?m)^\| ` + regexp.QuoteMeta(name) + ` \| ` + got + ` \|`)
		if !row.Match(readme) {
			t.Errorf("keys/README.md has no row %q | %s", name, got)
		}
	}
	// Embedded does the same check on the copies in the binary.
	k, err := signature.Embedded()
	if err != nil {
		t.Fatalf("Embedded: %v", err)
	}
	for name, fp := range signature.Shipped {
		if !k.Has(fp) || !strings.Contains(k.From(fp), name) {
			t.Errorf("the binary's keyring lacks %s (%s)", name, fp)
		}
	}
}
