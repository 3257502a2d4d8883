// Package checksum parses and computes the image checksums of the
// contract: "sha256:HEX" and "sha512:HEX".
package checksum

import (
	"crypto/sha256"
	"crypto/sha512"
	"encoding/hex"
	"fmt"
	"hash"
	"strings"
)

// Sum is a checksum: an algorithm and the lower-case hex digest.
type Sum struct {
	Algo string // "sha256" or "sha512"
	Hex  string
}

var hexLen = map[string]int{"sha256": 64, "sha512": 128}

// Parse reads "sha256:HEX" or "sha512:HEX" (hex in either case).
func Parse(s string) (Sum, error) {
	algo, digest, ok := strings.Cut(strings.TrimSpace(s), ":")
	algo = strings.ToLower(algo)
	want, known := hexLen[algo]
	switch {
	case !ok || !known:
		return Sum{}, fmt.Errorf("checksum %q: want sha256:HEX or sha512:HEX", s)
	case len(digest) != want:
		return Sum{}, fmt.Errorf("checksum %q: a %s digest is %d hex digits, got %d", s, algo, want, len(digest))
	}
	if _, err := hex.DecodeString(digest); err != nil {
		return Sum{}, fmt.Errorf("checksum %q: the digest is not hex", s)
	}
	return Sum{Algo: algo, Hex: strings.ToLower(digest)}, nil
}

// String is the contract form, "sha256:HEX".
func (s Sum) String() string { return s.Algo + ":" + s.Hex }

// NewHash returns a fresh hash of the sum's algorithm. Both sha256 and
// sha512 states implement encoding.BinaryMarshaler, so a partial hash can
// be saved and resumed.
func (s Sum) NewHash() hash.Hash { return NewHash(s.Algo) }

// NewHash returns a fresh hash for "sha256" or "sha512" (sha256 otherwise).
func NewHash(algo string) hash.Hash {
	if algo == "sha512" {
		return sha512.New()
	}
	return sha256.New()
}

// Of formats a finished hash as a Sum string, e.g. "sha256:ab12…".
func Of(algo string, h hash.Hash) string {
	return algo + ":" + hex.EncodeToString(h.Sum(nil))
}
