package source_test

import (
	"reflect"
	"strings"
	"testing"

	"github.com/quantix/cloudimages/catalog"
	"github.com/quantix/cloudimages/fault"
	"github.com/quantix/cloudimages/source"
)

var sum256 = "sha256:" + strings.Repeat("ab", 32)

func testCatalog(t *testing.T) *catalog.Catalog {
	t.Helper()
	c, err := catalog.New([]catalog.Entry{
		{ID: "pinned", Name: "Pinned", URL: "https://example.com/p/disk.img", Checksum: strings.ToUpper(sum256[:7]) + strings.Repeat("AB", 32), SizeBytes: 100, Format: "qcow2"},
		{ID: "vendor", Name: "Vendor", URL: "https://example.com/v/v.qcow2", ChecksumURL: "https://example.com/v/SHA256SUMS"},
		{ID: "freebsd", Name: "FreeBSD", URL: "https://example.com/f/FreeBSD.qcow2.xz", ChecksumURL: "https://example.com/f/CHECKSUM.SHA256", Format: "qcow2"},
		{ID: "bare", Name: "Bare", URL: "https://example.com/b/disk.zst", Checksum: sum256, Format: "raw"},
		{ID: "mirrored", Name: "Mirrored", URL: "https://a.example/m.qcow2", Mirrors: []string{"https://b.example/m.qcow2"}, Checksum: sum256},
	})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestResolve(t *testing.T) {
	cat := testCatalog(t)
	cases := []struct {
		name string
		req  source.Request
		code string        // the error's contract code, "" for success
		want source.Source // checked when code is ""
	}{
		{"catalog entry with pinned checksum", source.Request{CatalogID: "pinned", PoolID: "p"}, "",
			source.Source{CatalogID: "pinned", URL: "https://example.com/p/disk.img", Name: "Pinned", FileName: "pinned.img",
				SourceKey: "catalog:pinned", Checksum: sum256, SizeBytes: 100, Format: "qcow2"}},
		{"catalog entry with mirrors, and a credential", source.Request{CatalogID: "mirrored", PoolID: "p", Credential: "vendor-1"}, "",
			source.Source{CatalogID: "mirrored", URL: "https://a.example/m.qcow2", Mirrors: []string{"https://b.example/m.qcow2"}, Name: "Mirrored",
				FileName: "mirrored.qcow2", SourceKey: "catalog:mirrored", Checksum: sum256, Credential: "vendor-1"}},
		{"a credential name that cannot be one", source.Request{CatalogID: "mirrored", PoolID: "p", Credential: "no/such"}, fault.InvalidRequest, source.Source{}},
		{"catalog entry with vendor file", source.Request{CatalogID: "vendor", PoolID: "p", Name: "mine"}, "",
			source.Source{CatalogID: "vendor", URL: "https://example.com/v/v.qcow2", Name: "mine", FileName: "vendor.qcow2",
				SourceKey: "catalog:vendor", ChecksumURL: "https://example.com/v/SHA256SUMS"}},
		{"request checksum beats the catalog's", source.Request{CatalogID: "vendor", PoolID: "p", Checksum: strings.ToUpper(sum256)}, "",
			source.Source{CatalogID: "vendor", URL: "https://example.com/v/v.qcow2", Name: "Vendor", FileName: "vendor.qcow2",
				SourceKey: "catalog:vendor", Checksum: sum256, ChecksumURL: "https://example.com/v/SHA256SUMS"}},
		{"url named by its file", source.Request{URL: "https://example.com/a/b.qcow2?sig=1", Checksum: sum256, PoolID: "p"}, "",
			source.Source{URL: "https://example.com/a/b.qcow2?sig=1", Name: "b.qcow2", FileName: "b.qcow2",
				SourceKey: "https://example.com/a/b.qcow2?sig=1", Checksum: sum256}},
		{"url with name, format and size", source.Request{URL: "http://10.0.0.5/b.img", Name: "mine", PoolID: "p", AllowUnverified: true, Format: "raw", SizeBytes: 7}, "",
			source.Source{URL: "http://10.0.0.5/b.img", Name: "mine", FileName: "mine.img", SourceKey: "http://10.0.0.5/b.img", Format: "raw", SizeBytes: 7}},
		{"compressed catalog entry is published decompressed", source.Request{CatalogID: "freebsd", PoolID: "p"}, "",
			source.Source{CatalogID: "freebsd", URL: "https://example.com/f/FreeBSD.qcow2.xz", Name: "FreeBSD", FileName: "freebsd.qcow2",
				SourceKey: "catalog:freebsd", ChecksumURL: "https://example.com/f/CHECKSUM.SHA256", Format: "qcow2"}},
		{"catalog entry without a disk extension gets its format's", source.Request{CatalogID: "bare", PoolID: "p"}, "",
			source.Source{CatalogID: "bare", URL: "https://example.com/b/disk.zst", Name: "Bare", FileName: "bare.raw",
				SourceKey: "catalog:bare", Checksum: sum256, Format: "raw"}},
		{"compressed url loses .xz", source.Request{URL: "https://example.com/x.qcow2.xz", Checksum: sum256, PoolID: "p"}, "",
			source.Source{URL: "https://example.com/x.qcow2.xz", Name: "x.qcow2.xz", FileName: "x.qcow2",
				SourceKey: "https://example.com/x.qcow2.xz", Checksum: sum256}},
		{"compressed url loses .GZ, query kept", source.Request{URL: "https://example.com/x.raw.GZ?sig=1", Name: "mine", Checksum: sum256, PoolID: "p"}, "",
			source.Source{URL: "https://example.com/x.raw.GZ?sig=1", Name: "mine", FileName: "mine.raw",
				SourceKey: "https://example.com/x.raw.GZ?sig=1", Checksum: sum256}},
		{"compressed url with .bz2 and a declared format", source.Request{URL: "https://example.com/appliance.bz2", Checksum: sum256, PoolID: "p", Format: "vmdk"}, "",
			source.Source{URL: "https://example.com/appliance.bz2", Name: "appliance.bz2", FileName: "appliance.vmdk",
				SourceKey: "https://example.com/appliance.bz2", Checksum: sum256, Format: "vmdk"}},
		{"compressed url with .zst named by the request", source.Request{URL: "https://example.com/d.vhdx.zst", Name: "d.vhdx.zst", Checksum: sum256, PoolID: "p"}, "",
			source.Source{URL: "https://example.com/d.vhdx.zst", Name: "d.vhdx.zst", FileName: "d.vhdx",
				SourceKey: "https://example.com/d.vhdx.zst", Checksum: sum256}},
		{"declared format keeps a disk extension", source.Request{URL: "https://example.com/u.img", Checksum: sum256, PoolID: "p", Format: "qcow2"}, "",
			source.Source{URL: "https://example.com/u.img", Name: "u.img", FileName: "u.img",
				SourceKey: "https://example.com/u.img", Checksum: sum256, Format: "qcow2"}},
		{"unknown format", source.Request{URL: "https://example.com/x.img", Checksum: sum256, PoolID: "p", Format: "img"}, fault.InvalidRequest, source.Source{}},
		{"format in capitals", source.Request{URL: "https://example.com/x.img", Checksum: sum256, PoolID: "p", Format: "QCOW2"}, fault.InvalidRequest, source.Source{}},
		{"url with user and password", source.Request{URL: "https://u:secret@example.com/x.img", Checksum: sum256, PoolID: "p"}, fault.InvalidRequest, source.Source{}},
		{"url with user only", source.Request{URL: "https://u@example.com/x.img", AllowUnverified: true, PoolID: "p"}, fault.InvalidRequest, source.Source{}},
		{"file url", source.Request{URL: "file:///etc/passwd", Checksum: sum256, PoolID: "p"}, fault.URLForbidden, source.Source{}},
		{"url without host", source.Request{URL: "https:///x.img", Checksum: sum256, PoolID: "p"}, fault.InvalidRequest, source.Source{}},
		{"url too long", source.Request{URL: "https://example.com/" + strings.Repeat("a", source.MaxURLLen), Checksum: sum256, PoolID: "p"}, fault.InvalidRequest, source.Source{}},
		{"url without file name", source.Request{URL: "https://example.com/", Checksum: sum256, PoolID: "p"}, fault.InvalidRequest, source.Source{}},
		{"url without checksum", source.Request{URL: "https://example.com/x.img", PoolID: "p"}, fault.InvalidRequest, source.Source{}},
		{"checksum without its algorithm", source.Request{URL: "https://example.com/x.img", Checksum: sum256[7:], PoolID: "p"}, fault.InvalidRequest, source.Source{}},
		{"bad name", source.Request{URL: "https://example.com/x.img", Name: "../x", Checksum: sum256, PoolID: "p"}, fault.InvalidRequest, source.Source{}},
		{"catalog entry under its display name", source.Request{CatalogID: "vendor", PoolID: "p", Name: "Vendor 24.04 LTS (x86_64)"}, "",
			source.Source{CatalogID: "vendor", URL: "https://example.com/v/v.qcow2", Name: "Vendor 24.04 LTS (x86_64)", FileName: "vendor.qcow2",
				SourceKey: "catalog:vendor", ChecksumURL: "https://example.com/v/SHA256SUMS"}},
		{"catalog display name with a control character", source.Request{CatalogID: "vendor", PoolID: "p", Name: "a\x00b"}, fault.InvalidRequest, source.Source{}},
		{"url name with spaces", source.Request{URL: "https://example.com/x.img", Name: "my disk", Checksum: sum256, PoolID: "p"}, fault.InvalidRequest, source.Source{}},
		{"bad format", source.Request{CatalogID: "pinned", Format: "QCOW/2", PoolID: "p"}, fault.InvalidRequest, source.Source{}},
		{"negative size", source.Request{CatalogID: "pinned", SizeBytes: -1, PoolID: "p"}, fault.InvalidRequest, source.Source{}},
		{"unknown entry", source.Request{CatalogID: "nope", PoolID: "p"}, fault.CatalogEntryNotFound, source.Source{}},
		{"both", source.Request{CatalogID: "pinned", URL: "https://example.com/x.img", PoolID: "p"}, fault.InvalidRequest, source.Source{}},
		{"neither", source.Request{PoolID: "p"}, fault.InvalidRequest, source.Source{}},
		{"no pool", source.Request{CatalogID: "pinned"}, fault.InvalidRequest, source.Source{}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, err := source.Resolve(cat, c.req)
			if c.code != "" {
				if fe, ok := fault.As(err); !ok || fe.Code != c.code {
					t.Fatalf("error = %v, want code %s", err, c.code)
				}
				if strings.Contains(err.Error(), "secret") {
					t.Fatalf("error %q shows the password", err)
				}
				return
			}
			if err != nil || !reflect.DeepEqual(got, c.want) {
				t.Fatalf("Resolve = %+v, %v\nwant %+v", got, err, c.want)
			}
		})
	}
}

func TestUnknownEntryListsSomeEntries(t *testing.T) {
	_, err := source.Resolve(testCatalog(t), source.Request{CatalogID: "nope", PoolID: "p"})
	if err == nil || !strings.Contains(err.Error(), "pinned, vendor") {
		t.Fatalf("error = %v, want it to list the catalog's entries", err)
	}
}

func TestFileNameInAPoolThatConverts(t *testing.T) {
	for _, c := range []struct{ name, format, want string }{
		{"debian-12.qcow2", "", "debian-12.qcow2"},
		{"debian-12.qcow2", "raw", "debian-12.raw"},
		{"cirros.img", "qcow2", "cirros.qcow2"},
		{"disk.raw", "raw", "disk.raw"},
		{"appliance.vmdk", "qcow2", "appliance.qcow2"},
		{"noext", "raw", "noext.raw"},
		{"fedora-41-1.4.x86_64.QCOW2", "raw", "fedora-41-1.4.x86_64.raw"},
	} {
		if got := source.FileNameIn(c.name, c.format); got != c.want {
			t.Errorf("FileNameIn(%q, %q) = %q, want %q", c.name, c.format, got, c.want)
		}
	}
}
