package activities

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/url"
	"strings"

	"go.temporal.io/sdk/activity"

	"github.com/quantix/cloudimages/catalog"
	"github.com/quantix/cloudimages/fault"
	"github.com/quantix/cloudimages/nodeagent/agentclient"
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
	if src.Credential != "" {
		// Known here, on the worker that holds the credentials, before
		// anything is downloaded; the secret stays out of the history.
		if _, err := a.credential(src.Credential, src.URLs()); err != nil {
			return source.Source{}, err
		}
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
	if src.Checksum == "" {
		sum, err := a.vendorChecksum(ctx, src)
		switch {
		case err == nil:
			src.Checksum = sum
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
	return src, nil
}

func isFatal(err error) bool {
	var te interface{ NonRetryable() bool }
	return errors.As(err, &te) && te.NonRetryable()
}

func (a *Activities) vendorChecksum(ctx context.Context, src source.Source) (string, error) {
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

// credential returns the source credential of a name with its secret, for
// a download from urls: an unknown name, or one for a host none of the
// URLs is on, is a fatal invalid_request that says what to do. Its
// messages name the credential, never its secret.
func (a *Activities) credential(name string, urls []string) (agentclient.Credential, error) {
	c, ok := a.Credentials.Get(name)
	if !ok {
		known := "none are defined: start the worker with --credentials FILE"
		if names := a.Credentials.Names(); len(names) > 0 {
			known = "it knows: " + strings.Join(names, ", ")
		}
		return c, fatal(fault.InvalidRequest, "no source credential %q on the worker (%s)", name, known)
	}
	for _, raw := range urls {
		if u, err := url.Parse(raw); err == nil && c.For(u) {
			return c, nil
		}
	}
	return c, fatal(fault.InvalidRequest, "source credential %q is for host %s, and the image comes from %s: name a credential for its host, or fix the credential's host in the worker's --credentials file",
		name, c.Host, strings.Join(urls, ", "))
}
