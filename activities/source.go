package activities

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/url"
	"path"
	"strings"

	"go.temporal.io/sdk/activity"

	"github.com/quantix/cloudimages/catalog"
	"github.com/quantix/cloudimages/checksum"
	"github.com/quantix/cloudimages/fault"
)

// SourceRequest names what to download: a catalog entry or a URL.
type SourceRequest struct {
	CatalogID string
	URL       string
	Name      string
	Checksum  string // pinned by the request, "sha256:HEX" or "sha512:HEX"
	PoolID    string
}

// Source is where an image comes from, the file it becomes in its pool,
// and how it is checked.
type Source struct {
	CatalogID   string
	URL         string
	Name        string
	FileName    string
	SourceKey   string
	Checksum    string // empty until resolved; stays empty when Unverified
	ChecksumURL string // the vendor's checksum file, when not pinned
	SizeBytes   int64  // expected size for progress, 0 if unknown (a catalog's is a hint)
	Format      string // disk format ("qcow2", "raw"); empty lets the node go by the file name
	Unverified  bool   // accepted without a checksum
}

// ResolveSource finds the image's source in the catalog, or checks the URL
// and name it was given. It does not touch the network.
func (a *Activities) ResolveSource(ctx context.Context, in SourceRequest) (Source, error) {
	if in.PoolID == "" {
		return Source{}, fatal(fault.InvalidRequest, "pool_id is missing: say which storage pool the image goes to")
	}
	var src Source
	switch {
	case in.CatalogID != "" && in.URL != "":
		return Source{}, fatal(fault.InvalidRequest, "give catalog_id or url, not both")
	case in.CatalogID != "":
		e, ok := a.Catalog.Get(in.CatalogID)
		if !ok {
			return Source{}, fatal(fault.CatalogEntryNotFound, "no catalog entry %q: the catalog has %s", in.CatalogID, strings.Join(a.Catalog.IDs(), ", "))
		}
		name := e.Name
		if in.Name != "" {
			name = in.Name
		}
		src = Source{CatalogID: e.ID, URL: e.URL, Name: name, FileName: catalog.FileName(e.ID, e.URL),
			SourceKey: catalog.SourceKey(e.ID, ""), Checksum: e.Checksum, ChecksumURL: e.ChecksumURL, SizeBytes: e.SizeBytes, Format: e.Format}
	case in.URL != "":
		u, err := url.Parse(in.URL)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return Source{}, fatal(fault.URLForbidden, "url %q: only http:// and https:// URLs with a host can be downloaded", in.URL)
		}
		name := in.Name
		if name == "" {
			name = path.Base(u.Path)
		}
		if err := catalog.ValidName(name); err != nil {
			return Source{}, fatal(fault.InvalidRequest, "%v", err)
		}
		src = Source{URL: in.URL, Name: name, FileName: catalog.FileName(name, in.URL), SourceKey: catalog.SourceKey("", in.URL)}
	default:
		return Source{}, fatal(fault.InvalidRequest, "give catalog_id (see GET /v1/catalog) or url")
	}
	if in.Checksum != "" {
		src.Checksum = in.Checksum
	}
	if src.Checksum != "" {
		sum, err := checksum.Parse(src.Checksum)
		if err != nil {
			return Source{}, fatal(fault.InvalidRequest, "%v", err)
		}
		src.Checksum = sum.String()
	}
	return src, nil
}

// ChecksumRequest asks for the checksum of an image's source.
type ChecksumRequest struct {
	ImageID         string
	Source          Source
	AllowUnverified bool
}

// maxChecksumFile bounds what is read of a vendor's checksum file; the
// real ones are a few kilobytes.
const maxChecksumFile = 4 << 20

// unverifiedAfter is the attempt from which a request that accepts an
// unverified image stops waiting for a checksum file that does not answer.
const unverifiedAfter = 3

// ResolveChecksum returns the source with its checksum: the pinned one, or
// the one the vendor's checksum file lists for the image. With none to be
// had it is checksum_unavailable, or, when the request accepts it, the
// source marked Unverified. The image record gets the outcome.
func (a *Activities) ResolveChecksum(ctx context.Context, in ChecksumRequest) (Source, error) {
	src := in.Source
	if src.Checksum == "" {
		sum, err := a.vendorChecksum(ctx, src)
		switch {
		case err == nil:
			src.Checksum = sum
		case in.AllowUnverified && (isFatal(err) || activity.GetInfo(ctx).Attempt >= unverifiedAfter):
			a.log().Warn("no checksum; the image will not be verified", "image_id", in.ImageID, "error", err)
			src.Unverified = true
		default:
			return Source{}, err
		}
	}
	if err := a.Store.RecordChecksum(ctx, in.ImageID, src.Checksum, src.Unverified); err != nil {
		return Source{}, asStoreError(err)
	}
	return src, nil
}

func isFatal(err error) bool {
	var te interface{ NonRetryable() bool }
	return errors.As(err, &te) && te.NonRetryable()
}

func (a *Activities) vendorChecksum(ctx context.Context, src Source) (string, error) {
	if src.ChecksumURL == "" {
		return "", fatal(fault.ChecksumUnavailable, "no checksum for %s: give one (\"checksum\": \"sha256:HEX\") or accept an unverified image", src.URL)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, src.ChecksumURL, nil)
	if err != nil {
		return "", fatal(fault.ChecksumUnavailable, "checksum file %q: %v", src.ChecksumURL, err)
	}
	resp, err := a.httpClient().Do(req)
	if err != nil {
		return "", retryable(fault.ChecksumUnavailable,
			"cannot reach the vendor's checksum file %s from the worker (%v): check the worker's internet access (proxy, firewall, DNS), or pin a checksum in the catalog entry",
			src.ChecksumURL, err)
	}
	defer resp.Body.Close()
	switch {
	case resp.StatusCode >= 500 || resp.StatusCode == http.StatusTooManyRequests:
		return "", retryable(fault.ChecksumUnavailable, "checksum file %s: the server answered %s", src.ChecksumURL, resp.Status)
	case resp.StatusCode != http.StatusOK:
		return "", fatal(fault.ChecksumUnavailable, "checksum file %s: the server answered %s; fix the catalog entry's checksum_url or pin a checksum", src.ChecksumURL, resp.Status)
	}
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxChecksumFile))
	if err != nil {
		return "", retryable(fault.ChecksumUnavailable, "read checksum file %s: %v", src.ChecksumURL, err)
	}
	sum, err := catalog.LookupChecksum(data, src.URL, src.ChecksumURL)
	if err != nil {
		return "", fatal(fault.ChecksumUnavailable, "%v; pin a checksum in the catalog entry instead", err)
	}
	return sum, nil
}
