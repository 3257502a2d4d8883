package signature_test

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/quantix/cloudimages/internal/testenv"
	"github.com/quantix/cloudimages/signature"
)

const sums = "# vendor sums\nSHA256 (image.qcow2) = " + "ab" + "abababababababababababababababababababababababababababababababab" + "ab\n"

// keyringWith is the shipped keys plus the test vendors' public keys, as
// a worker started with --keyring DIR holds them.
func keyringWith(t *testing.T, keys ...*testenv.SigningKey) *signature.Keyring {
	t.Helper()
	k, err := signature.Load(testenv.WriteKeyring(t, keys...))
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func TestGoodClearsignedFileIsVerifiedAndOnlyItsSignedTextCounts(t *testing.T) {
	vendor := testenv.NewSigningKey(t, "vendor")
	k := keyringWith(t, vendor)
	signed := vendor.ClearSign([]byte(sums))
	// A mirror may add text around the signed block; it must not count.
	injected := "SHA256 (image.qcow2) = " + strings.Repeat("00", 32) + "\n"
	data := append([]byte(injected), signed...)
	data = append(data, []byte(injected)...)

	res, err := k.Clearsigned(data, []string{vendor.Fingerprint})
	if err != nil {
		t.Fatalf("Clearsigned: %v", err)
	}
	if res.Status != signature.Verified || res.Signer != vendor.Fingerprint {
		t.Errorf("status %q signer %q, want verified by %s", res.Status, res.Signer, vendor.Fingerprint)
	}
	if string(res.Text) != strings.TrimSuffix(sums, "\n") && string(res.Text) != sums {
		t.Errorf("text = %q, want only the signed sums %q", res.Text, sums)
	}
	if bytes.Contains(res.Text, []byte(strings.Repeat("00", 32))) {
		t.Errorf("text holds the line added outside the signed block: %q", res.Text)
	}
}

func TestGoodDetachedSignatureIsVerifiedArmoredOrBinary(t *testing.T) {
	vendor := testenv.NewSigningKey(t, "vendor")
	k := keyringWith(t, vendor)
	for _, armored := range []bool{true, false} {
		sig := vendor.DetachSign([]byte(sums), armored)
		res, err := k.Detached([]byte(sums), sig, []string{vendor.Fingerprint})
		if err != nil {
			t.Fatalf("armored=%v: %v", armored, err)
		}
		if res.Status != signature.Verified || res.Signer != vendor.Fingerprint || string(res.Text) != sums {
			t.Errorf("armored=%v: %+v, want verified by the vendor with the file's text", armored, res)
		}
	}
}

func TestTamperedChecksumFileFails(t *testing.T) {
	vendor := testenv.NewSigningKey(t, "vendor")
	k := keyringWith(t, vendor)
	pins := []string{vendor.Fingerprint}
	tampered := strings.Replace(sums, "abab", "abac", 1)

	sig := vendor.DetachSign([]byte(sums), true)
	_, err := k.Detached([]byte(tampered), sig, pins)
	wantInvalid(t, "detached", err, "does not match")

	signed := vendor.ClearSign([]byte(sums))
	_, err = k.Clearsigned(bytes.Replace(signed, []byte("abab"), []byte("abac"), 1), pins)
	wantInvalid(t, "clearsigned", err, "does not match")
}

// A signature by a key that is in the keyring but not pinned for this
// entry is no better than one by a stranger.
func TestSignatureByAnotherKeyFails(t *testing.T) {
	vendor := testenv.NewSigningKey(t, "vendor")
	other := testenv.NewSigningKey(t, "other")
	k := keyringWith(t, vendor, other)
	pins := []string{vendor.Fingerprint}

	_, err := k.Detached([]byte(sums), other.DetachSign([]byte(sums), true), pins)
	wantInvalid(t, "detached", err, "not by a key its catalog entry pins")
	_, err = k.Clearsigned(other.ClearSign([]byte(sums)), pins)
	wantInvalid(t, "clearsigned", err, "not by a key its catalog entry pins")
	// The message names the key that did sign, for the operator to look up.
	if err != nil && !strings.Contains(err.Error(), other.Fingerprint[24:]) {
		t.Errorf("message %q does not name the signer's key id %s", err, other.Fingerprint[24:])
	}
}

// A signature by a key nobody has heard of fails when the pinned key is
// held; it cannot make the image "verified".
func TestSignatureByUnknownKeyFails(t *testing.T) {
	vendor := testenv.NewSigningKey(t, "vendor")
	stranger := testenv.NewSigningKey(t, "stranger")
	k := keyringWith(t, vendor)
	_, err := k.Detached([]byte(sums), stranger.DetachSign([]byte(sums), false), []string{vendor.Fingerprint})
	wantInvalid(t, "detached", err, "not by a key its catalog entry pins")
}

// Without the pinned key (no --keyring, or not in it) nothing is
// verified: the status says so, and a clearsigned file still gives only
// its signed text.
func TestWithoutThePinnedKeyItIsNotChecked(t *testing.T) {
	vendor := testenv.NewSigningKey(t, "vendor")
	k, err := signature.Load("")
	if err != nil {
		t.Fatal(err)
	}
	res, err := k.Detached([]byte(sums), vendor.DetachSign([]byte(sums), true), []string{vendor.Fingerprint})
	if err != nil || res.Status != signature.NotChecked {
		t.Errorf("detached without the key: %+v, %v; want not_checked", res, err)
	}
	res, err = k.Clearsigned(append([]byte("junk\n"), vendor.ClearSign([]byte(sums))...), []string{vendor.Fingerprint})
	if err != nil || res.Status != signature.NotChecked || bytes.Contains(res.Text, []byte("junk")) {
		t.Errorf("clearsigned without the key: %+v, %v; want not_checked with the signed text only", res, err)
	}
}

func TestMalformedSignaturesFail(t *testing.T) {
	vendor := testenv.NewSigningKey(t, "vendor")
	k := keyringWith(t, vendor)
	pins := []string{vendor.Fingerprint}
	cases := map[string][]byte{
		"empty":            {},
		"html error page":  []byte("<html><body>503</body></html>"),
		"armored garbage":  []byte("-----BEGIN PGP SIGNATURE-----\n\nnot base64 at all!\n-----END PGP SIGNATURE-----\n"),
		"a public key":     vendor.PublicArmored(),
		"truncated binary": vendor.DetachSign([]byte(sums), false)[:20],
	}
	for name, sig := range cases {
		_, err := k.Detached([]byte(sums), sig, pins)
		wantInvalid(t, name, err, "")
	}
	// An entry that says "clearsigned" gets a plain file: a mirror that
	// strips the signature must not turn the file into an unsigned one.
	_, err := k.Clearsigned([]byte(sums), pins)
	wantInvalid(t, "plain file for a clearsigned entry", err, "not clearsigned")
}

func TestKeyringDirectory(t *testing.T) {
	vendor := testenv.NewSigningKey(t, "vendor")
	dir := testenv.WriteKeyring(t, vendor)
	if err := os.WriteFile(filepath.Join(dir, "README.md"), []byte("# our vendor keys\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	k, err := signature.Load(dir)
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	if !k.Has(vendor.Fingerprint) || !k.Has(signature.Fedora41) {
		t.Errorf("keyring %v lacks the vendor's key or the shipped Fedora 41 key", k.Fingerprints())
	}
	// Spaced, lowercase fingerprints as gpg prints them are the same key.
	spaced := strings.ToLower(vendor.Fingerprint[:4] + " " + vendor.Fingerprint[4:])
	if !k.Has(spaced) {
		t.Errorf("Has(%q) = false", spaced)
	}

	if _, err := signature.Load(filepath.Join(dir, "missing")); err == nil || !strings.Contains(err.Error(), "directory of armored public keys") {
		t.Errorf("a missing directory: %v, want an error saying what to give", err)
	}
	bad := t.TempDir()
	if err := os.WriteFile(filepath.Join(bad, "ubuntu.asc"), []byte("not a key"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := signature.Load(bad); err == nil || !strings.Contains(err.Error(), "ubuntu.asc") {
		t.Errorf("a file that is no key: %v, want an error naming it", err)
	}
}

func TestFingerprintsAreNormalized(t *testing.T) {
	got, err := signature.NormalizeFingerprint("d2eb 4462 6fdd c30b 513d  5bb7 1a5d 6c4c 7db8 7c81")
	if err != nil || got != signature.Ubuntu {
		t.Errorf("NormalizeFingerprint = %q, %v; want %s", got, err, signature.Ubuntu)
	}
	for _, bad := range []string{"", "7DB87C81", "1A5D6C4C7DB87C81", strings.Repeat("Z", 40)} {
		if _, err := signature.NormalizeFingerprint(bad); err == nil {
			t.Errorf("NormalizeFingerprint(%q) accepted", bad)
		}
	}
}

func wantInvalid(t *testing.T, what string, err error, msg string) {
	t.Helper()
	if !errors.Is(err, signature.ErrInvalid) {
		t.Errorf("%s: error %v, want signature.ErrInvalid", what, err)
		return
	}
	if !strings.Contains(err.Error(), msg) {
		t.Errorf("%s: message %q does not say %q", what, err, msg)
	}
}
