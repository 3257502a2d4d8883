package signature

import (
	"bytes"
	"embed"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"

	"github.com/ProtonMail/go-crypto/openpgp"
)

// Fingerprints of the vendors' signing keys. Those of Fedora, Rocky,
// AlmaLinux and CentOS are shipped in keys/ (see Shipped); Ubuntu's and
// Debian's are not, and come from the operator's --keyring.
const (
	Fedora40    = "115DF9AEF857853EE8445D0A0727707EA15B79CC"
	Fedora41    = "466CF2D8B60BC3057AA9453ED0622462E99D6AD1"
	Fedora42    = "B0F4950458F69E1150C6C5EDC8AC4916105EF944"
	Rocky8      = "7051C470A929F454CEBE37B715AF5DAC6D745A60"
	Rocky9      = "21CB256AE16FC54C6E652949702D426D350D275D"
	AlmaLinux8  = "5E9B8F5617B5066CE92057C3488FCF7C3ABB34F8"
	AlmaLinux9  = "BF18AC2876178908D6E71267D36CB86CB86B3716"
	CentOS      = "99DB70FAE1D7CE227FB6488205B555B38483C65D"
	Ubuntu      = "D2EB44626FDDC30B513D5BB71A5D6C4C7DB87C81" // UEC Image Automatic Signing Key: SHA256SUMS.gpg
	DebianCDKey = "DF9B9C49EAA9298432589D76DA87E80D6294BE9B" // Debian CD signing key (debian.org/CD/verify)
)

// Shipped maps each key file in keys/ to the fingerprint it must have.
// Embedded refuses a file whose key is not that one, so a key swapped in
// the source tree cannot pass as a vendor's.
var Shipped = map[string]string{
	"RPM-GPG-KEY-fedora-40-primary":      Fedora40,
	"RPM-GPG-KEY-fedora-41-primary":      Fedora41,
	"RPM-GPG-KEY-fedora-42-primary":      Fedora42,
	"RPM-GPG-KEY-Rocky-8":                Rocky8,
	"RPM-GPG-KEY-Rocky-9":                Rocky9,
	"RPM-GPG-KEY-AlmaLinux-8":            AlmaLinux8,
	"RPM-GPG-KEY-AlmaLinux-9":            AlmaLinux9,
	"RPM-GPG-KEY-CentOS-Official-SHA256": CentOS,
}

//go:embed keys/RPM-GPG-KEY-*
var shippedFS embed.FS

// Keyring is a set of public keys by primary fingerprint.
type Keyring struct {
	keys map[string]*openpgp.Entity
	from map[string]string // fingerprint → where the key came from
}

// Embedded returns the keys shipped in the binary, after checking each
// against its pinned fingerprint (Shipped).
func Embedded() (*Keyring, error) {
	k := &Keyring{keys: map[string]*openpgp.Entity{}, from: map[string]string{}}
	files, err := fs.ReadDir(shippedFS, "keys")
	if err != nil {
		return nil, err
	}
	for _, f := range files {
		want, ok := Shipped[f.Name()]
		if !ok {
			return nil, fmt.Errorf("signature: keys/%s is shipped but not pinned in Shipped", f.Name())
		}
		data, err := shippedFS.ReadFile(path.Join("keys", f.Name()))
		if err != nil {
			return nil, err
		}
		got, err := k.add(data, "built-in "+f.Name())
		if err != nil {
			return nil, err
		}
		if len(got) != 1 || got[0] != want {
			return nil, fmt.Errorf("signature: built-in key %s has fingerprint %v, pinned %s", f.Name(), got, want)
		}
	}
	return k, nil
}

// Load returns the shipped keys and, when dir is not empty, every public
// key in the files of dir (armored or binary, any number per file; files
// whose names start with '.' and README files are skipped). A key in dir
// replaces a shipped one with the same fingerprint: that is how a
// vendor's extended expiry is installed.
func Load(dir string) (*Keyring, error) {
	k, err := Embedded()
	if err != nil || dir == "" {
		return k, err
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("keyring: %w: give a directory of armored public keys (gpg --export --armor FINGERPRINT > DIR/vendor.asc)", err)
	}
	for _, e := range entries {
		name := e.Name()
		if strings.HasPrefix(name, ".") || strings.HasPrefix(strings.ToUpper(name), "README") || e.IsDir() {
			continue
		}
		file := filepath.Join(dir, name)
		data, err := os.ReadFile(file)
		if err != nil {
			return nil, fmt.Errorf("keyring: %w", err)
		}
		if _, err := k.add(data, file); err != nil {
			return nil, err
		}
	}
	return k, nil
}

// add reads the public keys in data and returns their fingerprints.
func (k *Keyring) add(data []byte, from string) ([]string, error) {
	read := openpgp.ReadKeyRing
	if bytes.HasPrefix(bytes.TrimSpace(data), []byte("-----BEGIN ")) {
		read = openpgp.ReadArmoredKeyRing
	}
	list, err := read(bytes.NewReader(bytes.TrimSpace(data)))
	if err != nil {
		return nil, fmt.Errorf("keyring: %s is not an OpenPGP public key (%v): keep only public keys there, as `gpg --export --armor FINGERPRINT` writes them", from, err)
	}
	var fps []string
	for _, e := range list {
		if e.PrivateKey != nil {
			return nil, fmt.Errorf("keyring: %s holds a private key: remove it, and give only the public key (gpg --export --armor, not --export-secret-keys)", from)
		}
		fp := Fingerprint(e)
		k.keys[fp], k.from[fp] = e, from
		fps = append(fps, fp)
	}
	return fps, nil
}

// Has reports whether the keyring holds the key with this fingerprint.
func (k *Keyring) Has(fingerprint string) bool {
	fp, err := NormalizeFingerprint(fingerprint)
	return err == nil && k.keys[fp] != nil
}

// From says where the key with this fingerprint came from ("built-in
// FILE" or the keyring file's path), or "" when it is not held.
func (k *Keyring) From(fingerprint string) string {
	fp, _ := NormalizeFingerprint(fingerprint)
	return k.from[fp]
}

// Fingerprints lists the fingerprints of every key held, sorted.
func (k *Keyring) Fingerprints() []string {
	out := make([]string, 0, len(k.keys))
	for fp := range k.keys {
		out = append(out, fp)
	}
	slices.Sort(out)
	return out
}

// pinned returns the keys held among the fingerprints given: a signature
// is checked against these only.
func (k *Keyring) pinned(fingerprints []string) openpgp.EntityList {
	var out openpgp.EntityList
	for _, f := range fingerprints {
		fp, err := NormalizeFingerprint(f)
		if err != nil {
			continue // the catalog refuses these at load
		}
		if e := k.keys[fp]; e != nil {
			out = append(out, e)
		}
	}
	return out
}

// HoldsAny reports whether the keyring holds any of the keys with these
// fingerprints: whether a signature by one of them can be checked here.
func (k *Keyring) HoldsAny(fingerprints []string) bool { return len(k.pinned(fingerprints)) > 0 }
