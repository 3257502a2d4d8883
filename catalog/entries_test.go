package catalog_test

import (
	"slices"
	"strings"
	"testing"

	"github.com/quantix/cloudimages/catalog"
	"github.com/quantix/cloudimages/source"
)

// Every built-in entry tells a VM creator how to boot it, validly.
func TestBuiltinEntriesCarryWhatAVMCreatorNeeds(t *testing.T) {
	seen := map[string]bool{}
	for _, e := range catalog.Builtin {
		if seen[e.ID] {
			t.Errorf("entry %q listed twice", e.ID)
		}
		seen[e.ID] = true
		if e.DefaultUser == "" {
			t.Errorf("entry %q has no default_user", e.ID)
		}
		if !slices.Contains(catalog.Firmwares, e.Firmware) {
			t.Errorf("entry %q has firmware %q, want one of %v", e.ID, e.Firmware, catalog.Firmwares)
		}
		if e.MinDiskBytes < 1<<30 {
			t.Errorf("entry %q has min_disk_bytes %d: no cloud image fits in less than 1 GiB here", e.ID, e.MinDiskBytes)
		}
		if e.Format == "" || e.ChecksumURL == "" {
			t.Errorf("entry %q lacks format or checksum_url", e.ID)
		}
	}
	if _, err := catalog.New(catalog.Builtin); err != nil {
		t.Fatal(err)
	}
}

// The entries are there: an xz, a gz, a raw, CentOS Stream 9 and
// openSUSE Leap; each compressed one shows its compression and is
// published without the compression extension.
func TestBuiltinHasCompressedAndRawEntries(t *testing.T) {
	cat, err := catalog.Load("")
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct{ id, compression, format, file string }{
		{"freebsd-14.2", "xz", "qcow2", "freebsd-14.2.qcow2"},
		{"openwrt-23.05.5", "gzip", "raw", "openwrt-23.05.5.img"},
		{"debian-12-raw", "", "raw", "debian-12-raw.raw"},
		{"centos-stream-9", "", "qcow2", "centos-stream-9.qcow2"},
		{"opensuse-leap-15.6", "", "qcow2", "opensuse-leap-15.6.qcow2"},
		{"ubuntu-24.04", "", "qcow2", "ubuntu-24.04.img"},
	}
	for _, c := range cases {
		e, ok := cat.Get(c.id)
		if !ok {
			t.Errorf("no built-in entry %q", c.id)
			continue
		}
		if e.Compression != c.compression || e.Format != c.format {
			t.Errorf("%s: compression %q format %q, want %q %q", c.id, e.Compression, e.Format, c.compression, c.format)
		}
		src, err := source.Resolve(cat, source.Request{CatalogID: c.id, PoolID: "p"})
		if err != nil {
			t.Errorf("%s: Resolve: %v", c.id, err)
			continue
		}
		if src.FileName != c.file {
			t.Errorf("%s: published as %q, want %q", c.id, src.FileName, c.file)
		}
	}
}

// A catalog file's firmware and min_disk_bytes are checked at load, and a
// compression given in the file is replaced by the URL's.
func TestEntryFieldsAreValidated(t *testing.T) {
	ok := catalog.Entry{ID: "x", URL: "https://example.com/x.raw.zst", Checksum: "sha256:00", Firmware: "uefi", MinDiskBytes: 1, Compression: "gzip"}
	c, err := catalog.New([]catalog.Entry{ok})
	if err != nil {
		t.Fatal(err)
	}
	if e, _ := c.Get("x"); e.Compression != "zstd" {
		t.Errorf("compression %q, want zstd from the URL", e.Compression)
	}
	bad := ok
	bad.Firmware = "efi"
	if _, err := catalog.New([]catalog.Entry{bad}); err == nil || !strings.Contains(err.Error(), "bios, uefi, both") {
		t.Errorf("firmware efi: %v, want an error naming bios, uefi, both", err)
	}
	bad = ok
	bad.MinDiskBytes = -1
	if _, err := catalog.New([]catalog.Entry{bad}); err == nil || !strings.Contains(err.Error(), "min_disk_bytes") {
		t.Errorf("min_disk_bytes -1: %v, want an error naming min_disk_bytes", err)
	}
	unknown := ok
	unknown.Firmware, unknown.MinDiskBytes, unknown.URL = "", 0, "https://example.com/x.qcow2"
	c, err = catalog.New([]catalog.Entry{unknown})
	if err != nil {
		t.Fatalf("an entry that leaves firmware and min_disk_bytes out: %v", err)
	}
	if e, _ := c.Get("x"); e.Compression != "" {
		t.Errorf("compression %q for a .qcow2 URL, want none", e.Compression)
	}
}

// The new entries' checksum files, in the style each vendor writes them
// (made up here: they cannot be fetched), give the entry's file its sum.
func TestNewEntriesChecksumFilesParse(t *testing.T) {
	cat, err := catalog.Load("")
	if err != nil {
		t.Fatal(err)
	}
	hex := strings.Repeat("ab", 32)
	lines := map[string]func(file string) string{
		"freebsd-14.2": func(f string) string {
			return "SHA256 (" + f + ") = " + hex + "\nSHA256 (other.raw.xz) = " + strings.Repeat("cd", 32) + "\n"
		},
		"openwrt-23.05.5": func(f string) string {
			return hex + " *" + f + "\n" + strings.Repeat("cd", 32) + " *openwrt-x.img.gz\n"
		},
		"centos-stream-9":    func(f string) string { return "# CentOS\nSHA256 (" + f + ") = " + hex + "\n" },
		"opensuse-leap-15.6": func(f string) string { return hex + "  " + f + "\n" },
	}
	for id, file := range lines {
		e, _ := cat.Get(id)
		base := e.URL[strings.LastIndex(e.URL, "/")+1:]
		got, err := catalog.LookupChecksum([]byte(file(base)), e.URL, e.ChecksumURL)
		if err != nil || got != "sha256:"+hex {
			t.Errorf("%s: LookupChecksum = %q, %v; want sha256:%s", id, got, err, hex)
		}
	}
}
