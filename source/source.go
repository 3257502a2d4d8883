// Package source turns a download request — a catalog entry or a URL,
// with a name, a checksum and a pool — into the source it resolves to:
// where the image comes from, the file it becomes in its pool and how it
// is checked. It also holds the URL policy. The API, the workflow's first
// step and the node agent all judge a request here, so they cannot
// disagree.
package source

import (
	"fmt"
	"net/url"
	"path"
	"slices"
	"strings"
	"unicode"

	"github.com/quantix/cloudimages/catalog"
	"github.com/quantix/cloudimages/checksum"
	"github.com/quantix/cloudimages/diskimage"
	"github.com/quantix/cloudimages/fault"
)

// Request names what to download: a catalog entry or a URL.
type Request struct {
	CatalogID string
	URL       string
	Name      string // the image's name; by default the entry's, or the URL's file name
	Checksum  string // pinned by the request, "sha256:HEX" or "sha512:HEX"
	PoolID    string
	Format    string // disk format (one of diskimage.Formats), when the request declares it
	SizeBytes int64  // expected size, when the request names it
	// Version names one build of a catalog entry (catalog.Version), with
	// Checksum its checksum: the image is that build, with its own source
	// key and file name, as a subscription downloads each build.
	Version string
	// AllowUnverified accepts a URL download without a checksum.
	AllowUnverified bool
	// Credential names a source credential of the worker (--credentials)
	// to send to the mirror's host; the name only, never the secret.
	Credential string
}

// Source is where an image comes from, the file it becomes in its pool,
// and how it is checked. (Its fields carry no JSON tags: recorded workflow
// histories hold it under these names.)
type Source struct {
	CatalogID   string
	URL         string
	Name        string
	FileName    string
	SourceKey   string
	Checksum    string   // empty until resolved; stays empty when Unverified
	ChecksumURL string   // the vendor's checksum file, when not pinned
	SizeBytes   int64    // expected size for progress, 0 if unknown (a catalog's is a hint)
	Format      string   // disk format ("qcow2", "raw"); empty lets the node go by the file name
	Unverified  bool     // accepted without a checksum
	Mirrors     []string // more URLs of the same file, tried in order after URL
	Credential  string   // the name of the worker's source credential to send

	// How the checksum file is signed, from the catalog entry (see
	// catalog.Entry), and what its signature said once checked:
	// signature.Verified, Unsigned or NotChecked ("" until then).
	SignatureURL string
	Clearsigned  bool
	SigningKeys  []string
	Signature    string
	Version      string // the build, when the request named one
}

// URLs are the source's URL, then its mirrors.
func (s Source) URLs() []string { return append([]string{s.URL}, s.Mirrors...) }

// Resolve checks a request and returns its source. It does not touch the
// network, and does not judge the URL's address: the node agent does that
// when it dials, knowing whether it may reach private networks. Errors are
// *fault.Error with the contract's codes.
func Resolve(cat *catalog.Catalog, req Request) (Source, error) {
	if req.PoolID == "" {
		return Source{}, fault.New(fault.InvalidRequest, "pool_id is missing: say which storage pool the image goes to (GET /v1/pools lists them)")
	}
	sum, err := ParseChecksum(req.Checksum)
	if err != nil {
		return Source{}, err
	}
	if err := checkName(req); err != nil {
		return Source{}, err
	}
	if err := CheckFormat(req.Format); err != nil {
		return Source{}, err
	}
	if err := CheckSize(req.SizeBytes); err != nil {
		return Source{}, err
	}
	if err := CheckCredentialName(req.Credential); err != nil {
		return Source{}, err
	}
	var src Source
	switch {
	case req.CatalogID != "" && req.URL != "":
		return Source{}, fault.New(fault.InvalidRequest, "give catalog_id or url, not both")
	case req.CatalogID != "":
		if src, err = fromCatalog(cat, req.CatalogID); err != nil {
			return Source{}, err
		}
		if req.Version != "" {
			if src, err = asBuild(src, req.Version, sum); err != nil {
				return Source{}, err
			}
		}
	case req.Version != "":
		return Source{}, fault.New(fault.InvalidRequest, "version names a build of a catalog entry: give catalog_id with it")
	case req.URL != "":
		if src, err = fromURL(req); err != nil {
			return Source{}, err
		}
	default:
		return Source{}, fault.New(fault.InvalidRequest, "give catalog_id (GET /v1/catalog lists them) or url")
	}
	if req.Name != "" {
		src.Name = req.Name
	}
	if sum != "" {
		src.Checksum = sum
	}
	if req.Format != "" {
		src.Format = req.Format
	}
	if req.SizeBytes > 0 {
		src.SizeBytes = req.SizeBytes
	}
	src.FileName = withFormatExt(src.FileName, src.Format)
	src.Credential = req.Credential
	return src, nil
}

// checkName judges a request's name. A URL download's name becomes its
// file name, so it must be a safe one; a catalog entry's file name comes
// from the entry, and its name is only shown ("Ubuntu 24.04 LTS"): any
// printable text of reasonable length.
func checkName(req Request) error {
	switch {
	case req.Name == "":
		return nil
	case req.CatalogID == "":
		if err := catalog.ValidName(req.Name); err != nil {
			return fault.New(fault.InvalidRequest, "%v", err)
		}
		if stem := strings.TrimSuffix(req.Name, path.Ext(req.Name)); strings.HasSuffix(stem, "-latest") {
			return fault.New(fault.InvalidRequest, "name %q: names ending in -latest are kept for the stable names of subscriptions (\"{catalog_id}-latest.{format}\"); give the image another name", req.Name)
		}
	case len(req.Name) > maxDisplayName || strings.TrimSpace(req.Name) == "" ||
		strings.IndexFunc(req.Name, func(r rune) bool { return !unicode.IsPrint(r) }) >= 0:
		return fault.New(fault.InvalidRequest, "name %q: give printable text of at most %d bytes", req.Name, maxDisplayName)
	}
	return nil
}

// maxDisplayName bounds the name shown for a catalog download.
const maxDisplayName = 200

func fromCatalog(cat *catalog.Catalog, id string) (Source, error) {
	e, ok := cat.Get(id)
	if !ok {
		return Source{}, fault.New(fault.CatalogEntryNotFound, "no catalog entry %q: GET /v1/catalog lists them; some are: %s", id, some(cat.IDs(), 10))
	}
	sum, err := ParseChecksum(e.Checksum)
	if err != nil {
		return Source{}, err
	}
	return Source{CatalogID: e.ID, URL: e.URL, Name: e.Name, FileName: fileName(e.ID, e.URL),
		SourceKey: SourceKey(e.ID, ""), Checksum: sum, ChecksumURL: e.ChecksumURL, SizeBytes: e.SizeBytes, Format: e.Format,
		Mirrors: slices.Clone(e.Mirrors), SignatureURL: e.SignatureURL, Clearsigned: e.Clearsigned, SigningKeys: e.SigningKeys}, nil
}

// asBuild makes a catalog source the one build version, whose checksum
// is sum: its own source key ("catalog:ID@CHECKSUM", so each build is its
// own image) and file name ("{catalog_id}-{version}.{ext}").
func asBuild(src Source, version, sum string) (Source, error) {
	if sum == "" {
		return Source{}, fault.New(fault.InvalidRequest, "version %q needs the build's checksum: give \"checksum\" with it", version)
	}
	if err := catalog.ValidName(version); err != nil {
		return Source{}, fault.New(fault.InvalidRequest, "version: %v", err)
	}
	src.SourceKey = BuildSourceKey(src.CatalogID, sum)
	src.FileName = fileName(src.CatalogID+"-"+version, src.URL)
	src.Version = version
	return src, nil
}

// BuildSourceKey is the source key of one build of a catalog entry.
func BuildSourceKey(catalogID, checksum string) string {
	return "catalog:" + catalogID + "@" + checksum
}

// LatestFileName is the stable name under which a pool's newest READY
// build of a catalog entry is published: "{catalog_id}-latest.{format}".
func LatestFileName(catalogID, format string) string {
	return catalogID + "-latest" + diskimage.Ext(format)
}

func fromURL(req Request) (Source, error) {
	u, err := CheckURL(req.URL, true)
	if err != nil {
		return Source{}, err
	}
	name := req.Name
	if name == "" {
		name = path.Base(u.Path)
		if catalog.ValidName(name) != nil {
			return Source{}, fault.New(fault.InvalidRequest, "the url does not end in a usable file name: give the image a \"name\" (letters, digits, '.', '_', '+', '-')")
		}
	}
	if req.Checksum == "" && !req.AllowUnverified {
		return Source{}, fault.New(fault.InvalidRequest, "a url download needs a checksum to verify the file: give \"checksum\": \"sha256:HEX\" (or sha512:HEX), or set \"allow_unverified\": true to accept the image unverified")
	}
	return Source{URL: req.URL, Name: name, FileName: fileName(name, req.URL), SourceKey: SourceKey("", req.URL)}, nil
}

// fileName is the name an image is published under: name with the URL's
// disk-format extension, as catalog.FileName gives it, but without a
// compression extension (.xz, .gz, .bz2, .zst) on either, since the node
// publishes the image decompressed: "x.qcow2.xz" is published as "x.qcow2".
func fileName(name, rawURL string) string {
	if u, err := url.Parse(rawURL); err == nil {
		if stripped := diskimage.StripCompressionExt(u.Path); stripped != u.Path {
			u.Path, u.RawPath = stripped, ""
			rawURL = u.String()
		}
	}
	return catalog.FileName(diskimage.StripCompressionExt(name), rawURL)
}

// diskExts are the extensions that already say a file is a disk image:
// a name with one of them keeps it whatever format is declared (vendors
// ship qcow2 as .img).
var diskExts = []string{".qcow2", ".qcow", ".img", ".raw", ".vmdk", ".vhd", ".vhdx", ".vdi", ".iso"}

// withFormatExt adds the declared format's extension (diskimage.Ext) to a
// file name that has no disk image extension: "freebsd-14" of a qcow2 is
// published as "freebsd-14.qcow2".
func withFormatExt(name, format string) string {
	ext := diskimage.Ext(format)
	if ext == "" || slices.Contains(diskExts, strings.ToLower(path.Ext(name))) {
		return name
	}
	return name + ext
}

// SourceKey identifies where an image comes from, for the store's rule of
// one live-or-READY image per source and pool: "catalog:ID" for a catalog
// entry, the URL itself otherwise.
func SourceKey(catalogID, rawURL string) string {
	if catalogID != "" {
		return "catalog:" + catalogID
	}
	return rawURL
}

// ParseChecksum checks a checksum ("sha256:HEX" or "sha512:HEX") and
// returns it in its normal form; "" stays "".
func ParseChecksum(s string) (string, error) {
	if s == "" {
		return "", nil
	}
	sum, err := checksum.Parse(s)
	if err != nil {
		return "", fault.New(fault.InvalidRequest, "%v", err)
	}
	return sum.String(), nil
}

// CheckFormat checks a declared disk format: one of diskimage.Formats
// ("qcow2", "raw", "vmdk", ...), as the contract spells them; "" declares
// none, and the node accepts what the bytes are.
func CheckFormat(f string) error {
	if f == "" || slices.Contains(diskimage.Formats, f) {
		return nil
	}
	return fault.New(fault.InvalidRequest, "format %q is not a disk format: give one of %s, or leave \"format\" out to accept what the bytes are",
		f, strings.Join(diskimage.Formats, ", "))
}

// CheckSize checks an expected size in bytes; 0 means unknown.
func CheckSize(n int64) error {
	if n < 0 {
		return fault.New(fault.InvalidRequest, "size_bytes is %d; give the size in bytes, or leave it out", n)
	}
	return nil
}

// CheckCredentialName judges the name of a source credential: a name
// (catalog.ValidName); "" names none. Whether the worker holds it is known
// only there: the workflow's first step checks that.
func CheckCredentialName(name string) error {
	if name == "" {
		return nil
	}
	if err := catalog.ValidName(name); err != nil {
		return fault.New(fault.InvalidRequest, "credential: %v: give the name of a source credential defined in the worker's --credentials file", err)
	}
	return nil
}

// some lists up to n items, and says how many more there are.
func some(items []string, n int) string {
	if len(items) <= n {
		return strings.Join(items, ", ")
	}
	return fmt.Sprintf("%s and %d more", strings.Join(items[:n], ", "), len(items)-n)
}

// FileNameIn is the name fileName takes in a pool that keeps its images
// in poolFormat ("raw" or "qcow2"; "" keeps every image as it comes): the
// image is converted there when it is not in that format already, so its
// disk-format extension becomes the pool's.
func FileNameIn(fileName, poolFormat string) string {
	if poolFormat == "" {
		return fileName
	}
	base := fileName
	switch ext := path.Ext(fileName); strings.ToLower(ext) {
	case ".qcow2", ".qcow", ".img", ".raw", ".vmdk", ".vhd", ".vhdx", ".vdi", ".iso":
		base = strings.TrimSuffix(fileName, ext)
	}
	return base + diskimage.Ext(poolFormat)
}

// MaxUploadSize is the largest upload the API takes (its Tus-Max-Size):
// the node agents' default --max-image-size, which refuses larger ones too.
const MaxUploadSize = 64 << 30

// UploadRequest is what an uploader declares: the tus Upload-Length and
// the metadata pool_id, name, checksum and format.
type UploadRequest struct {
	PoolID    string
	Name      string
	Checksum  string
	Format    string
	SizeBytes int64
}

// Upload checks an upload's declaration and returns its source: the name
// is the file's (with the declared format's extension when it has no disk
// image extension), the checksum in its normal form, and a source key of
// its own, so that no two uploads are ever taken for the same image.
// Without a checksum the source is Unverified: the node computes one, and
// the image says it was computed rather than checked.
func Upload(req UploadRequest, imageID string) (Source, error) {
	if req.PoolID == "" {
		return Source{}, fault.New(fault.InvalidRequest, "pool_id is missing from Upload-Metadata: say which storage pool the image goes to (GET /v1/pools lists them)")
	}
	if req.Name == "" {
		return Source{}, fault.New(fault.InvalidRequest, "name is missing from Upload-Metadata: give the image's file name (letters, digits, '.', '_', '+', '-')")
	}
	if err := catalog.ValidName(req.Name); err != nil {
		return Source{}, fault.New(fault.InvalidRequest, "name: %v", err)
	}
	sum, err := ParseChecksum(req.Checksum)
	if err != nil {
		return Source{}, err
	}
	if err := CheckFormat(req.Format); err != nil {
		return Source{}, err
	}
	switch {
	case req.SizeBytes <= 0:
		return Source{}, fault.New(fault.InvalidRequest, "Upload-Length is %d: give the file's size in bytes (an empty file is no image)", req.SizeBytes)
	case req.SizeBytes > MaxUploadSize:
		return Source{}, fault.New(fault.TooLarge, "the upload is %d bytes, past the largest the nodes take (%d bytes)", req.SizeBytes, int64(MaxUploadSize))
	}
	return Source{Name: req.Name, FileName: withFormatExt(diskimage.StripCompressionExt(req.Name), req.Format), SourceKey: "upload:" + imageID,
		Checksum: sum, SizeBytes: req.SizeBytes, Format: req.Format, Unverified: sum == ""}, nil
}
