package activities

import (
	"context"
	"errors"
	"io"
	"net/http"

	"go.temporal.io/sdk/activity"

	"github.com/quantix/cloudimages/catalog"
	"github.com/quantix/cloudimages/fault"
	"github.com/quantix/cloudimages/source"
)

// ResolveSource is the workflow's first step: the source package checks
// the request and finds its source, as the API did for a request it
// started (a workflow started from the temporal CLI is checked only here).
// It does not touch the network.
func (a *Activities) ResolveSource(ctx context.Context, in source.Request) (source.Source, error) {
	src, err := source.Resolve(a.Catalog, in)
	if err != nil {
		fe := fault.From(err)
		return source.Source{}, fatal(fe.Code, "%s", fe.Message)
	}
	return src, nil
}

// ChecksumRequest asks for the checksum of an image's source.
type ChecksumRequest struct {
	ImageID         string
	Source          source.Source
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
func (a *Activities) ResolveChecksum(ctx context.Context, in ChecksumRequest) (source.Source, error) {
	src := in.Source
	listed := ""
	if src.Checksum == "" {
		f, err := a.fetchChecksumFile(ctx, src, Validators{})
		switch {
		case err == nil:
			src.Checksum, listed = f.Checksum, f.Listed
		case in.AllowUnverified && (isFatal(err) || activity.GetInfo(ctx).Attempt >= unverifiedAfter):
			activity.GetLogger(ctx).Warn("no checksum; the image will not be verified", "image_id", in.ImageID, "error", err)
			src.Unverified = true
		default:
			return source.Source{}, err
		}
	}
	if err := a.Store.RecordChecksum(ctx, in.ImageID, src.Checksum, src.Unverified); err != nil {
		return source.Source{}, asStoreError(err)
	}
	if src.Version == "" && src.Checksum != "" {
		src.Version = catalog.Version(listed, src.URL, src.Checksum)
	}
	if err := a.Store.RecordVersion(ctx, in.ImageID, src.Version); err != nil {
		return source.Source{}, asStoreError(err)
	}
	return src, nil
}

func isFatal(err error) bool {
	var te interface{ NonRetryable() bool }
	return errors.As(err, &te) && te.NonRetryable()
}

// Validators make a fetch of a checksum file conditional: the ETag and
// Last-Modified of the copy fetched before.
type Validators struct {
	ETag         string
	LastModified string
}

// ChecksumFile is what a vendor's checksum file says about an image.
type ChecksumFile struct {
	Checksum string // "sha256:HEX" or "sha512:HEX"; "" when NotModified
	Listed   string // the name the file lists the image under
	Validators
	// NotModified: the server answered 304 to a conditional fetch, so the
	// file (and the build it names) is the one fetched before.
	NotModified bool
}

// fetchChecksumFile fetches the vendor's checksum file of src (with
// If-None-Match and If-Modified-Since when given validators) and finds
// the image's checksum in it. Every fetch of a checksum file, a
// download's and a subscription's check, goes through here.
func (a *Activities) fetchChecksumFile(ctx context.Context, src source.Source, cond Validators) (ChecksumFile, error) {
	if src.ChecksumURL == "" {
		return ChecksumFile{}, fatal(fault.ChecksumUnavailable, "no checksum for %s: give one (\"checksum\": \"sha256:HEX\") or accept an unverified image", src.URL)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, src.ChecksumURL, nil)
	if err != nil {
		return ChecksumFile{}, fatal(fault.ChecksumUnavailable, "checksum file %q: %v", src.ChecksumURL, err)
	}
	if cond.ETag != "" {
		req.Header.Set("If-None-Match", cond.ETag)
	}
	if cond.LastModified != "" {
		req.Header.Set("If-Modified-Since", cond.LastModified)
	}
	resp, err := a.httpClient().Do(req)
	if err != nil {
		return ChecksumFile{}, retryable(fault.ChecksumUnavailable,
			"cannot reach the vendor's checksum file %s from the worker (%v): check the worker's internet access (proxy, firewall, DNS), or pin a checksum in the catalog entry",
			src.ChecksumURL, err)
	}
	defer resp.Body.Close()
	got := Validators{ETag: resp.Header.Get("ETag"), LastModified: resp.Header.Get("Last-Modified")}
	switch {
	case resp.StatusCode == http.StatusNotModified && (cond.ETag != "" || cond.LastModified != ""):
		if got == (Validators{}) {
			got = cond
		}
		return ChecksumFile{Validators: got, NotModified: true}, nil
	case resp.StatusCode >= 500 || resp.StatusCode == http.StatusTooManyRequests:
		return ChecksumFile{}, retryable(fault.ChecksumUnavailable, "checksum file %s: the server answered %s", src.ChecksumURL, resp.Status)
	case resp.StatusCode != http.StatusOK:
		return ChecksumFile{}, fatal(fault.ChecksumUnavailable, "checksum file %s: the server answered %s; fix the catalog entry's checksum_url or pin a checksum", src.ChecksumURL, resp.Status)
	}
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxChecksumFile))
	if err != nil {
		return ChecksumFile{}, retryable(fault.ChecksumUnavailable, "read checksum file %s: %v", src.ChecksumURL, err)
	}
	fs, err := catalog.LookupFile(data, src.URL, src.ChecksumURL)
	if err != nil {
		return ChecksumFile{}, fatal(fault.ChecksumUnavailable, "%v; pin a checksum in the catalog entry instead", err)
	}
	return ChecksumFile{Checksum: fs.Sum, Listed: fs.Name, Validators: got}, nil
}
