// Package catalog is the list of cloud images one can download — the
// built-in one or a JSON file given with --catalog — and the parsers for
// the vendors' checksum files (SHA256SUMS, SHA512SUMS, CHECKSUM).
package catalog

import (
	"encoding/json"
	"fmt"
	"net/url"
	"os"
	"path"
	"slices"
	"sort"
	"strings"

	"github.com/quantix/cloudimages/diskimage"
	"github.com/quantix/cloudimages/signature"
)

// Entry is one downloadable image.
type Entry struct {
	ID      string `json:"id"`
	Name    string `json:"name"`
	OS      string `json:"os"`
	Version string `json:"version"`
	Arch    string `json:"arch"`
	Format  string `json:"format"` // one of diskimage.Formats: qcow2 | raw | vmdk | vhd | vhdx | vdi | iso
	URL     string `json:"url"`
	// Mirrors are more URLs of the same file, tried in order after URL
	// (on 404, 5xx, an unreachable or stalled mirror) by the node.
	Mirrors     []string `json:"mirrors,omitempty"`
	ChecksumURL string   `json:"checksum_url"`
	Checksum    string   `json:"checksum"` // "sha256:HEX" or "sha512:HEX" when pinned
	SizeBytes   int64    `json:"size_bytes"`

	// How the vendor signs its checksum file, when it does: a detached
	// signature at SignatureURL (Rocky's CHECKSUM.sig, Ubuntu's
	// SHA256SUMS.gpg), or the file itself clearsigned (Fedora). SigningKeys
	// pins the fingerprints of the keys trusted to sign it; the checksum is
	// only taken from the file once one of them did (package signature).
	SignatureURL string   `json:"signature_url,omitempty"`
	Clearsigned  bool     `json:"clearsigned,omitempty"`
	SigningKeys  []string `json:"signing_keys,omitempty"`

	// What a VM creator needs to boot the image.
	DefaultUser  string `json:"default_user"`   // the account cloud-init (or the image) sets up
	CloudInit    bool   `json:"cloud_init"`     // the image runs cloud-init at boot
	MinDiskBytes int64  `json:"min_disk_bytes"` // smallest disk to give a VM: at least the image's virtual size
	Firmware     string `json:"firmware"`       // "bios", "uefi" or "both"; "" when unknown

	// Compression is what the URL's suffix announces ("xz", "gzip", "bzip2",
	// "zstd"), derived by New: a label for people, since the node agent goes
	// by the bytes' magic.
	Compression string `json:"compression,omitempty"`
}

// Firmwares are the values of Entry.Firmware.
var Firmwares = []string{"bios", "uefi", "both"}

// Catalog is a set of entries by id.
type Catalog struct {
	entries map[string]Entry
}

// New builds a catalog from entries; ids must be unique and entries valid.
func New(entries []Entry) (*Catalog, error) {
	c := &Catalog{entries: make(map[string]Entry, len(entries))}
	for _, e := range entries {
		if err := e.validate(); err != nil {
			return nil, err
		}
		keys, err := e.signing()
		if err != nil {
			return nil, err
		}
		e.SigningKeys = keys
		e.Compression = ""
		if u, err := url.Parse(e.URL); err == nil {
			e.Compression = diskimage.CompressionOfName(path.Base(u.Path))
		}
		if _, dup := c.entries[e.ID]; dup {
			return nil, fmt.Errorf("catalog: entry %q listed twice", e.ID)
		}
		c.entries[e.ID] = e
	}
	return c, nil
}

// Load returns the catalog from a JSON file (an array of entries, or
// {"items": [...]}), or the built-in catalog when path is empty.
func Load(path string) (*Catalog, error) {
	if path == "" {
		return New(Builtin)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("catalog: %w", err)
	}
	var entries []Entry
	if err := json.Unmarshal(data, &entries); err != nil {
		var wrapped struct {
			Items []Entry `json:"items"`
		}
		if err2 := json.Unmarshal(data, &wrapped); err2 != nil || wrapped.Items == nil {
			return nil, fmt.Errorf("catalog %s: want a JSON array of entries or {\"items\": [...]}: %v", path, err)
		}
		entries = wrapped.Items
	}
	return New(entries)
}

// Get returns the entry with the given id.
func (c *Catalog) Get(id string) (Entry, bool) {
	e, ok := c.entries[id]
	return e, ok
}

// Entries returns every entry, sorted by id.
func (c *Catalog) Entries() []Entry {
	out := make([]Entry, 0, len(c.entries))
	for _, e := range c.entries {
		out = append(out, e)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

// IDs returns the ids of every entry, sorted.
func (c *Catalog) IDs() []string {
	ids := make([]string, 0, len(c.entries))
	for _, e := range c.Entries() {
		ids = append(ids, e.ID)
	}
	return ids
}

func (e Entry) validate() error {
	switch {
	case e.ID == "":
		return fmt.Errorf("catalog: an entry has no id")
	case e.URL == "":
		return fmt.Errorf("catalog: entry %q has no url", e.ID)
	case e.Checksum == "" && e.ChecksumURL == "":
		return fmt.Errorf("catalog: entry %q has neither checksum nor checksum_url", e.ID)
	case e.Format != "" && !slices.Contains(diskimage.Formats, e.Format):
		// Refused here, at startup, rather than by every node at each download.
		return fmt.Errorf("catalog: entry %q has format %q: give one of %s", e.ID, e.Format, strings.Join(diskimage.Formats, ", "))
	case e.Firmware != "" && !slices.Contains(Firmwares, e.Firmware):
		return fmt.Errorf("catalog: entry %q has firmware %q: give one of %s (or leave it out when unknown)", e.ID, e.Firmware, strings.Join(Firmwares, ", "))
	case checkMirrors(e) != nil:
		return checkMirrors(e)
	case e.MinDiskBytes < 0:
		return fmt.Errorf("catalog: entry %q has min_disk_bytes %d: give the smallest disk in bytes (at least the image's virtual size), or 0 when unknown", e.ID, e.MinDiskBytes)
	}
	return nil
}

// checkMirrors judges an entry's mirrors: http or https URLs with a host
// and without a user or password (they would be shown with the catalog),
// none listed twice. The node judges their addresses when it dials.
func checkMirrors(e Entry) error {
	seen := map[string]bool{e.URL: true}
	for i, m := range e.Mirrors {
		u, err := url.Parse(m)
		switch {
		case m == "":
			return fmt.Errorf("catalog: entry %q: mirrors[%d] is empty", e.ID, i)
		case err != nil:
			return fmt.Errorf("catalog: entry %q: mirrors[%d] is not a URL: %v", e.ID, i, err)
		case u.Scheme != "http" && u.Scheme != "https":
			return fmt.Errorf("catalog: entry %q: mirrors[%d] %q: give an http or https URL", e.ID, i, u.Redacted())
		case u.User != nil:
			return fmt.Errorf("catalog: entry %q: mirrors[%d] %q carries a user or password: use a source credential (the worker's --credentials) instead", e.ID, i, u.Redacted())
		case u.Hostname() == "":
			return fmt.Errorf("catalog: entry %q: mirrors[%d] %q has no host", e.ID, i, m)
		case seen[m]:
			return fmt.Errorf("catalog: entry %q: mirrors[%d] %q is listed twice", e.ID, i, m)
		}
		seen[m] = true
	}
	return nil
}

// Signed reports whether the entry's checksum file is signed.
func (e Entry) Signed() bool { return e.SignatureURL != "" || e.Clearsigned }

// signing checks how the entry's checksum file is signed, and returns its
// pinned fingerprints in their normal form. A signed file with no key to
// check it, or keys with nothing signed, is a mistake in the catalog: said
// at startup, not found out at a download.
func (e Entry) signing() ([]string, error) {
	switch {
	case e.SignatureURL != "" && e.Clearsigned:
		return nil, fmt.Errorf("catalog: entry %q has both signature_url and clearsigned: a vendor signs its checksum file one way; give the one it uses", e.ID)
	case e.Signed() && e.ChecksumURL == "":
		return nil, fmt.Errorf("catalog: entry %q has a signature but no checksum_url: a signature is of the vendor's checksum file", e.ID)
	case e.Signed() && len(e.SigningKeys) == 0:
		return nil, fmt.Errorf("catalog: entry %q is signed but pins no key: give signing_keys, the fingerprints of the vendor's keys (gpg --show-keys KEYFILE)", e.ID)
	case !e.Signed() && len(e.SigningKeys) > 0:
		return nil, fmt.Errorf("catalog: entry %q pins signing_keys but says nothing is signed: give signature_url (a detached signature) or \"clearsigned\": true", e.ID)
	}
	if e.SignatureURL != "" {
		if u, err := url.Parse(e.SignatureURL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return nil, fmt.Errorf("catalog: entry %q has signature_url %q: give an http(s) URL", e.ID, e.SignatureURL)
		}
	}
	keys := make([]string, 0, len(e.SigningKeys))
	for _, k := range e.SigningKeys {
		fp, err := signature.NormalizeFingerprint(k)
		if err != nil {
			return nil, fmt.Errorf("catalog: entry %q: signing_keys: %v", e.ID, err)
		}
		keys = append(keys, fp)
	}
	if len(keys) == 0 {
		return nil, nil
	}
	return keys, nil
}
