// Package signature checks the OpenPGP signatures vendors put on their
// checksum files — clearsigned (Fedora, CentOS Stream) or detached (Rocky,
// AlmaLinux, Ubuntu, Debian) — against keys pinned by fingerprint. A
// checksum is only as good as the file it comes from: a mirror that can
// change the image can change an unsigned SHA256SUMS beside it too.
//
// The keys are those shipped in the binary (keys/, see its README) and
// those an operator adds in a directory of armored public keys (the
// worker's --keyring). A catalog entry names the fingerprints it trusts;
// a signature by any other key fails, even one in the keyring.
package signature

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/ProtonMail/go-crypto/openpgp"
	"github.com/ProtonMail/go-crypto/openpgp/armor"
	"github.com/ProtonMail/go-crypto/openpgp/clearsign"
	pgperrors "github.com/ProtonMail/go-crypto/openpgp/errors"
	"github.com/ProtonMail/go-crypto/openpgp/packet"
)

// What an image says of its checksum file's signature.
const (
	// Verified: the checksum came from a file signed by a key the catalog
	// entry pins, and the signature matched.
	Verified = "verified"
	// Unsigned: nothing signed to check — the vendor does not sign its
	// checksum file, or the checksum was pinned (in the catalog or the
	// request), or there is none (an unverified URL download).
	Unsigned = "unsigned"
	// NotChecked: the file is signed and the entry pins its key, but this
	// worker holds none of the pinned keys (see --keyring), so the
	// signature could not be checked. Never shown as verified.
	NotChecked = "not_checked"
)

// ErrInvalid is wrapped by every error that means the signature does not
// vouch for the file: a bad signature, a signature by a key the entry
// does not pin, a file that should be signed and is not.
var ErrInvalid = errors.New("signature invalid")

func invalid(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrInvalid, fmt.Sprintf(format, args...))
}

// NormalizeFingerprint returns a fingerprint as 40 (v4) or 64 (v6)
// uppercase hex digits, accepting the spaces and "0x" gpg prints.
func NormalizeFingerprint(s string) (string, error) {
	fp := strings.ToUpper(strings.ReplaceAll(strings.TrimPrefix(strings.TrimSpace(s), "0x"), " ", ""))
	if len(fp) != 40 && len(fp) != 64 {
		return "", fmt.Errorf("fingerprint %q: want the key's full fingerprint, 40 hex digits as `gpg --show-keys KEYFILE` prints it (a short key id is not enough)", s)
	}
	for _, r := range fp {
		if !strings.ContainsRune("0123456789ABCDEF", r) {
			return "", fmt.Errorf("fingerprint %q: want hex digits only", s)
		}
	}
	return fp, nil
}

// Fingerprint is an entity's primary key fingerprint as NormalizeFingerprint writes it.
func Fingerprint(e *openpgp.Entity) string {
	return fmt.Sprintf("%X", e.PrimaryKey.Fingerprint)
}

// keyID is the 16-hex-digit id that signatures name their issuer by.
func keyID(id uint64) string { return fmt.Sprintf("%016X", id) }

// Result is what a check found: the status, the fingerprint of the key
// that signed (when Verified), and the checksum file's text to take
// checksums from — for a clearsigned file only its signed part.
type Result struct {
	Status string
	Signer string
	Text   []byte
}

// Detached checks data against a detached signature (armored or binary)
// by one of the keys pinned. With none of them in the keyring it is
// NotChecked, and data is returned as it is.
func (k *Keyring) Detached(data, sig []byte, pinned []string) (Result, error) {
	keys := k.pinned(pinned)
	if len(keys) == 0 {
		return Result{Status: NotChecked, Text: data}, nil
	}
	packets, err := signaturePackets(sig)
	if err != nil {
		return Result{}, err
	}
	return check(keys, data, packets, data, pinned)
}

// Clearsigned checks a clearsigned file by one of the keys pinned and
// returns its signed text only: what stands before or after the signed
// block is no one's word. With none of the pinned keys in the keyring it
// is NotChecked, and still only the signed text is returned.
func (k *Keyring) Clearsigned(data []byte, pinned []string) (Result, error) {
	block, _ := clearsign.Decode(data)
	if block == nil {
		return Result{}, invalid("the checksum file is not clearsigned (no -----BEGIN PGP SIGNED MESSAGE----- block), though its catalog entry says it is")
	}
	keys := k.pinned(pinned)
	if len(keys) == 0 {
		return Result{Status: NotChecked, Text: block.Plaintext}, nil
	}
	packets, err := io.ReadAll(block.ArmoredSignature.Body)
	if err != nil {
		return Result{}, invalid("the clearsigned file's signature is not readable: %v", err)
	}
	return check(keys, block.Bytes, packets, block.Plaintext, pinned)
}

// check verifies signed against the signature packets with keys, and
// returns text as the Verified result.
func check(keys openpgp.EntityList, signed, packets, text []byte, pinned []string) (Result, error) {
	signer, err := openpgp.CheckDetachedSignature(keys, bytes.NewReader(signed), bytes.NewReader(packets), nil)
	if err != nil {
		return Result{}, explain(err, packets, pinned)
	}
	return Result{Status: Verified, Signer: Fingerprint(signer), Text: text}, nil
}

// signaturePackets returns the packets of a detached signature, armored
// ("-----BEGIN PGP SIGNATURE-----", as Ubuntu's SHA256SUMS.gpg and
// AlmaLinux's CHECKSUM.asc) or binary.
func signaturePackets(sig []byte) ([]byte, error) {
	trimmed := bytes.TrimSpace(sig)
	if len(trimmed) == 0 {
		return nil, invalid("the signature file is empty")
	}
	if !bytes.HasPrefix(trimmed, []byte("-----BEGIN ")) {
		return sig, nil
	}
	block, err := armor.Decode(bytes.NewReader(trimmed))
	if err != nil {
		return nil, invalid("the signature file is not an OpenPGP signature: %v", err)
	}
	if block.Type != openpgp.SignatureType {
		return nil, invalid("the signature file holds a %q block, not a PGP SIGNATURE", block.Type)
	}
	packets, err := io.ReadAll(block.Body)
	if err != nil {
		return nil, invalid("the signature file is not readable: %v", err)
	}
	return packets, nil
}

// issuers lists the key ids the signature packets name, for messages.
func issuers(packets []byte) []string {
	var ids []string
	r := packet.NewReader(bytes.NewReader(packets))
	for {
		p, err := r.Next()
		if err != nil {
			return ids
		}
		if sig, ok := p.(*packet.Signature); ok && sig.IssuerKeyId != nil {
			ids = append(ids, keyID(*sig.IssuerKeyId))
		}
	}
}

// explain turns the library's error into one that says what went wrong
// and what to do.
func explain(err error, packets []byte, pinned []string) error {
	switch {
	case errors.Is(err, pgperrors.ErrUnknownIssuer):
		by := "no key"
		if ids := issuers(packets); len(ids) > 0 {
			by = "key id " + strings.Join(ids, ", ")
		}
		return invalid("the checksum file is signed by %s, not by a key its catalog entry pins (%s): a mirror may have replaced the file, or the vendor changed keys — check the vendor's announcement, and only if the new key is genuine add its fingerprint to the entry's signing_keys and its public key to the worker's --keyring",
			by, strings.Join(pinned, ", "))
	case errors.Is(err, pgperrors.ErrKeyExpired):
		return invalid("the signing key has expired: put the vendor's current key (with its extended expiry) in the worker's --keyring directory")
	case errors.Is(err, pgperrors.ErrKeyRevoked):
		return invalid("the signing key is revoked: the vendor no longer vouches for it; take it out of the entry's signing_keys")
	case errors.Is(err, pgperrors.ErrSignatureExpired):
		return invalid("the signature has expired: the vendor has not re-signed the file; use a newer build or ask the vendor")
	}
	var se pgperrors.SignatureError
	if errors.As(err, &se) {
		return invalid("the signature does not match the checksum file (%v): the file was changed after it was signed — a broken or tampered mirror; try again later or use another mirror, and do not pin a checksum from this file", err)
	}
	return invalid("the signature cannot be checked (%v): the signature file is damaged or not an OpenPGP signature", err)
}
