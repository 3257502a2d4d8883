package testenv

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"

	"github.com/ProtonMail/go-crypto/openpgp"
	"github.com/ProtonMail/go-crypto/openpgp/armor"
	"github.com/ProtonMail/go-crypto/openpgp/clearsign"
	"github.com/ProtonMail/go-crypto/openpgp/packet"

	"github.com/quantix/cloudimages/signature"
)

// SigningKey is an OpenPGP key made for a test, playing a vendor that
// signs its checksum files.
type SigningKey struct {
	t      testing.TB
	entity *openpgp.Entity
	// Fingerprint is the key's fingerprint as a catalog entry pins it.
	Fingerprint string
}

// keyConfig makes Ed25519 keys: quick to generate, unlike RSA.
var keyConfig = &packet.Config{Algorithm: packet.PubKeyAlgoEdDSA}

// NewSigningKey generates a fresh signing key.
func NewSigningKey(t testing.TB, name string) *SigningKey {
	t.Helper()
	e, err := openpgp.NewEntity(name, "test vendor", name+"@vendor.test", keyConfig)
	if err != nil {
		t.Fatalf("generate a signing key: %v", err)
	}
	return &SigningKey{t: t, entity: e, Fingerprint: signature.Fingerprint(e)}
}

// PublicArmored is the public key, armored, as an operator puts it in
// the worker's --keyring directory.
func (k *SigningKey) PublicArmored() []byte {
	k.t.Helper()
	var buf bytes.Buffer
	w, err := armor.Encode(&buf, openpgp.PublicKeyType, nil)
	if err != nil {
		k.t.Fatal(err)
	}
	if err := k.entity.Serialize(w); err != nil {
		k.t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		k.t.Fatal(err)
	}
	return buf.Bytes()
}

// WriteKeyring writes the public keys into a fresh directory, one file
// each, and returns the directory: a worker's --keyring.
func WriteKeyring(t testing.TB, keys ...*SigningKey) string {
	t.Helper()
	dir := t.TempDir()
	for i, k := range keys {
		name := filepath.Join(dir, "vendor-"+string(rune('a'+i))+".asc")
		if err := os.WriteFile(name, k.PublicArmored(), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// ClearSign returns data clearsigned, as Fedora's CHECKSUM files are.
func (k *SigningKey) ClearSign(data []byte) []byte {
	k.t.Helper()
	var buf bytes.Buffer
	w, err := clearsign.Encode(&buf, k.entity.PrivateKey, nil)
	if err != nil {
		k.t.Fatal(err)
	}
	if _, err := w.Write(data); err != nil {
		k.t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		k.t.Fatal(err)
	}
	return buf.Bytes()
}

// DetachSign returns a detached signature of data: armored as Ubuntu's
// SHA256SUMS.gpg and AlmaLinux's CHECKSUM.asc, or binary.
func (k *SigningKey) DetachSign(data []byte, armored bool) []byte {
	k.t.Helper()
	var buf bytes.Buffer
	sign := openpgp.DetachSign
	if armored {
		sign = openpgp.ArmoredDetachSign
	}
	if err := sign(&buf, k.entity, bytes.NewReader(data), nil); err != nil {
		k.t.Fatal(err)
	}
	return buf.Bytes()
}

// AddSignature publishes at sigPath a detached signature by key of the
// mirror's file at path (armored, or binary), and returns its URL.
func (u *Upstream) AddSignature(key *SigningKey, path, sigPath string, armored bool) string {
	return u.AddFile(sigPath, key.DetachSign(u.data(path), armored))
}

// ClearSignFile replaces the mirror's file at path with itself
// clearsigned by key, as Fedora publishes its CHECKSUM, and returns its URL.
func (u *Upstream) ClearSignFile(key *SigningKey, path string) string {
	return u.AddFile(path, key.ClearSign(u.data(path)))
}

// Data returns the bytes the mirror serves at path.
func (u *Upstream) Data(path string) []byte { return u.data(path) }
