package activities_test

import (
	"context"
	"strings"
	"testing"

	"github.com/quantix/cloudimages/activities"
	"github.com/quantix/cloudimages/fault"
	"github.com/quantix/cloudimages/internal/testenv"
	"github.com/quantix/cloudimages/signature"
	"github.com/quantix/cloudimages/source"
)

// vendorMirror is a vendor's directory on a real HTTP server: an image,
// its BSD-style CHECKSUM file, and whatever signature a case adds.
type vendorMirror struct {
	up     *testenv.Upstream
	vendor *testenv.SigningKey
	sum    string // the image's real checksum, as the vendor lists it
	src    source.Source
}

func newVendorMirror(t *testing.T) *vendorMirror {
	up := testenv.NewUpstream(t)
	img := up.AddFile("images/x.qcow2", testenv.QCOW2Image(64<<10, 7))
	checksumURL := up.AddChecksumFile("images/CHECKSUM", testenv.CHECKSUMBSD, "images/x.qcow2")
	vendor := testenv.NewSigningKey(t, "vendor")
	return &vendorMirror{up: up, vendor: vendor, sum: up.SHA256("images/x.qcow2"),
		src: source.Source{CatalogID: "x", URL: img, ChecksumURL: checksumURL, SigningKeys: []string{vendor.Fingerprint}}}
}

// resolve runs ResolveChecksum with the bench's activities holding keys
// (nil: the built-in keys only) and returns the source or the error.
func (m *vendorMirror) resolve(t *testing.T, b *bench, keys *signature.Keyring, src source.Source, allowUnverified bool) (source.Source, error) {
	t.Helper()
	b.acts.Keyring = keys
	v, err := b.env.ExecuteActivity(b.acts.ResolveChecksum, activities.ChecksumRequest{ImageID: "img-1", Source: src, AllowUnverified: allowUnverified})
	if err != nil {
		return source.Source{}, err
	}
	var got source.Source
	if err := v.Get(&got); err != nil {
		t.Fatal(err)
	}
	return got, nil
}

func keysOf(t *testing.T, signers ...*testenv.SigningKey) *signature.Keyring {
	t.Helper()
	k, err := signature.Load(testenv.WriteKeyring(t, signers...))
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// wantRecorded checks what the image record says after ResolveChecksum.
func wantRecorded(t *testing.T, b *bench, sum, sig string) {
	t.Helper()
	img, err := b.store.Image(context.Background(), "img-1")
	if err != nil {
		t.Fatal(err)
	}
	if img.Checksum != sum || img.Signature != sig {
		t.Errorf("image records checksum %q signature %q, want %q %q", img.Checksum, img.Signature, sum, sig)
	}
}

func wantSignatureInvalid(t *testing.T, err error, says string) {
	t.Helper()
	if err == nil {
		t.Fatal("resolved, want signature_invalid")
	}
	if typ, nonRetryable := errorType(t, err); typ != fault.SignatureInvalid || !nonRetryable {
		t.Fatalf("error %v (%s, non-retryable %v), want a fatal signature_invalid", err, typ, nonRetryable)
	}
	if !strings.Contains(err.Error(), says) {
		t.Errorf("error %q does not say %q", err, says)
	}
}

func TestClearsignedChecksumFileIsVerifiedAndOnlyItsSignedLinesCount(t *testing.T) {
	m := newVendorMirror(t)
	m.up.ClearSignFile(m.vendor, "images/CHECKSUM")
	// A mirror prepends a line for the image with another checksum,
	// outside the signed block: it must not be the one used.
	signed := m.up.Data("images/CHECKSUM")
	m.up.AddFile("images/CHECKSUM", append([]byte("SHA256 (x.qcow2) = "+strings.Repeat("0", 64)+"\n"), signed...))
	src := m.src
	src.Clearsigned = true
	b := newBench(t, false)
	got, err := m.resolve(t, b, keysOf(t, m.vendor), src, false)
	if err != nil {
		t.Fatal(err)
	}
	if got.Checksum != m.sum || got.Signature != signature.Verified {
		t.Errorf("checksum %q signature %q, want %s verified", got.Checksum, got.Signature, m.sum)
	}
	wantRecorded(t, b, m.sum, signature.Verified)
}

func TestDetachedSignatureIsVerified(t *testing.T) {
	for _, armored := range []bool{true, false} {
		m := newVendorMirror(t)
		sigURL := m.up.AddSignature(m.vendor, "images/CHECKSUM", "images/CHECKSUM.sig", armored)
		src := m.src
		src.SignatureURL = sigURL
		b := newBench(t, false)
		got, err := m.resolve(t, b, keysOf(t, m.vendor), src, false)
		if err != nil {
			t.Fatalf("armored=%v: %v", armored, err)
		}
		if got.Checksum != m.sum || got.Signature != signature.Verified {
			t.Errorf("armored=%v: checksum %q signature %q, want %s verified", armored, got.Checksum, got.Signature, m.sum)
		}
		wantRecorded(t, b, m.sum, signature.Verified)
	}
}

// The mirror changes a checksum in the file after the vendor signed it:
// nothing from the file is trusted, not even with allow_unverified, and
// the record keeps no checksum.
func TestTamperedChecksumFileIsSignatureInvalid(t *testing.T) {
	m := newVendorMirror(t)
	sigURL := m.up.AddSignature(m.vendor, "images/CHECKSUM", "images/CHECKSUM.sig", true)
	file := string(m.up.Data("images/CHECKSUM"))
	evil := strings.Repeat("e", 64)
	m.up.AddFile("images/CHECKSUM", []byte(strings.Replace(file, m.sum[len("sha256:"):], evil, 1)))
	src := m.src
	src.SignatureURL = sigURL
	for _, allowUnverified := range []bool{false, true} {
		b := newBench(t, false)
		_, err := m.resolve(t, b, keysOf(t, m.vendor), src, allowUnverified)
		wantSignatureInvalid(t, err, "does not match")
		wantRecorded(t, b, "", "")
	}
}

func TestSignatureByAKeyTheEntryDoesNotPinIsSignatureInvalid(t *testing.T) {
	m := newVendorMirror(t)
	other := testenv.NewSigningKey(t, "other")
	sigURL := m.up.AddSignature(other, "images/CHECKSUM", "images/CHECKSUM.sig", true)
	src := m.src
	src.SignatureURL = sigURL
	b := newBench(t, false)
	// other's key is in the keyring: held is not trusted; only pinned is.
	_, err := m.resolve(t, b, keysOf(t, m.vendor, other), src, false)
	wantSignatureInvalid(t, err, "not by a key its catalog entry pins")
	wantRecorded(t, b, "", "")

	// A clearsigned file by a stranger, too.
	m.up.ClearSignFile(testenv.NewSigningKey(t, "stranger"), "images/CHECKSUM")
	src = m.src
	src.Clearsigned = true
	_, err = m.resolve(t, newBench(t, false), keysOf(t, m.vendor), src, false)
	wantSignatureInvalid(t, err, "not by a key its catalog entry pins")
}

// Without the pinned key the image is not_checked — never verified — and
// the detached signature is not even fetched.
func TestWithoutThePinnedKeyTheSignatureIsNotChecked(t *testing.T) {
	m := newVendorMirror(t)
	sigURL := m.up.AddSignature(m.vendor, "images/CHECKSUM", "images/CHECKSUM.sig", true)
	src := m.src
	src.SignatureURL = sigURL
	b := newBench(t, false)
	got, err := m.resolve(t, b, nil, src, false) // the built-in keys only
	if err != nil {
		t.Fatal(err)
	}
	if got.Checksum != m.sum || got.Signature != signature.NotChecked {
		t.Errorf("checksum %q signature %q, want %s not_checked", got.Checksum, got.Signature, m.sum)
	}
	wantRecorded(t, b, m.sum, signature.NotChecked)
	if n := m.up.Requests("images/CHECKSUM.sig"); n != 0 {
		t.Errorf("the signature was fetched %d times with no key to check it", n)
	}
}

func TestUnsignedAndPinnedChecksumsSayUnsigned(t *testing.T) {
	m := newVendorMirror(t)
	src := m.src
	src.SigningKeys = nil // a vendor that does not sign
	b := newBench(t, false)
	got, err := m.resolve(t, b, nil, src, false)
	if err != nil || got.Checksum != m.sum || got.Signature != signature.Unsigned {
		t.Fatalf("unsigned file: %+v, %v; want %s unsigned", got, err, m.sum)
	}
	wantRecorded(t, b, m.sum, signature.Unsigned)

	pinned := source.Source{URL: "https://example.com/x.qcow2", Checksum: sum256}
	b = newBench(t, false)
	got, err = m.resolve(t, b, nil, pinned, false)
	if err != nil || got.Signature != signature.Unsigned {
		t.Fatalf("pinned checksum: %+v, %v; want unsigned", got, err)
	}
	wantRecorded(t, b, sum256, signature.Unsigned)
}

// The signature file missing is no reason to trust the checksum file: an
// entry that says it is signed fails; a server error is tried again.
func TestMissingOrFailingSignatureFile(t *testing.T) {
	m := newVendorMirror(t)
	src := m.src
	src.SignatureURL = m.up.FileURL("images/CHECKSUM.sig") // never published: 404
	_, err := m.resolve(t, newBench(t, false), keysOf(t, m.vendor), src, true)
	wantSignatureInvalid(t, err, "signature_url")

	m.up.AddSignature(m.vendor, "images/CHECKSUM", "images/CHECKSUM.sig", true)
	m.up.SetFault("images/CHECKSUM.sig", testenv.Fault{Status: []int{503, 503, 503, 503, 503, 503, 503, 503, 503, 503}})
	_, err = m.resolve(t, newBench(t, false), keysOf(t, m.vendor), src, false)
	if typ, nonRetryable := errorType(t, err); typ != fault.ChecksumUnavailable || nonRetryable {
		t.Errorf("signature file answering 503: %v (%s, non-retryable %v), want a retryable checksum_unavailable", err, typ, nonRetryable)
	}
}

// A subscription's build arrives with its checksum given and what the
// check found of the checksum file's signature: the image records that,
// not "unsigned". A checksum given without a build (a request's own) can
// claim nothing.
func TestBuildChecksumKeepsTheSignatureItsCheckFound(t *testing.T) {
	for _, c := range []struct {
		name, version, claimed, want string
	}{
		{"build verified by its check", "41-1.4", signature.Verified, signature.Verified},
		{"build whose key the worker lacked", "41-1.4", signature.NotChecked, signature.NotChecked},
		{"build from a check before signatures", "41-1.4", "", signature.Unsigned},
		{"a request's own checksum", "", signature.Verified, signature.Unsigned},
	} {
		t.Run(c.name, func(t *testing.T) {
			b := newBench(t, false)
			src := source.Source{CatalogID: "x", URL: "https://example.com/x.qcow2", Checksum: "sha256:" + strings.Repeat("ab", 32), Version: c.version}
			v, err := b.env.ExecuteActivity(b.acts.ResolveChecksum, activities.ChecksumRequest{ImageID: "img-1", Source: src, BuildSignature: c.claimed})
			if err != nil {
				t.Fatal(err)
			}
			var got source.Source
			if err := v.Get(&got); err != nil {
				t.Fatal(err)
			}
			if got.Signature != c.want {
				t.Errorf("signature %q, want %q", got.Signature, c.want)
			}
			wantRecorded(t, b, src.Checksum, c.want)
		})
	}
}
