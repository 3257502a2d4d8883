package activities

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/url"
	"strings"

	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/temporal"

	"github.com/quantix/cloudimages/catalog"
	"github.com/quantix/cloudimages/fault"
	"github.com/quantix/cloudimages/nodeagent/agentclient"
	"github.com/quantix/cloudimages/signature"
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
// the one the vendor's checksum file lists for the image, once the file's
// signature (where the vendor signs it) is checked. With none to be had it
// is checksum_unavailable, or, when the request accepts it, the source
// marked Unverified; a signature that fails is signature_invalid, never
// accepted as unverified. The image record gets the outcome, signature
// status included.
func (a *Activities) ResolveChecksum(ctx context.Context, in ChecksumRequest) (source.Source, error) {
	src := in.Source
	src.Signature = signature.Unsigned // a pinned checksum, or none: nothing signed to check
	if src.Checksum == "" {
		sum, sig, err := a.vendorChecksum(ctx, src)
		switch {
		case err == nil:
			src.Checksum, src.Signature = sum, sig
		case isCode(err, fault.SignatureInvalid):
			return source.Source{}, err
		case in.AllowUnverified && (isFatal(err) || activity.GetInfo(ctx).Attempt >= unverifiedAfter):
			activity.GetLogger(ctx).Warn("no checksum; the image will not be verified", "image_id", in.ImageID, "error", err)
			src.Unverified = true
		default:
			return source.Source{}, err
		}
	}
	if err := a.Store.RecordChecksum(ctx, in.ImageID, src.Checksum, src.Unverified, src.Signature); err != nil {
		return source.Source{}, asStoreError(err)
	}
	return src, nil
}

func isFatal(err error) bool {
	var te interface{ NonRetryable() bool }
	return errors.As(err, &te) && te.NonRetryable()
}

func isCode(err error, code string) bool {
	var appErr *temporal.ApplicationError
	return errors.As(err, &appErr) && appErr.Type() == code
}

// vendorChecksum returns the checksum the vendor's checksum file lists for
// the image, and what the file's signature says (signature.Verified,
// Unsigned or NotChecked).
func (a *Activities) vendorChecksum(ctx context.Context, src source.Source) (sum, sig string, err error) {
	if src.ChecksumURL == "" {
		return "", "", fatal(fault.ChecksumUnavailable, "no checksum for %s: give one (\"checksum\": \"sha256:HEX\") or accept an unverified image", src.URL)
	}
	file, err := a.checksumFile(ctx, src)
	if err != nil {
		return "", "", err
	}
	sum, err = catalog.LookupChecksum(file.Text, src.URL, src.ChecksumURL)
	if err != nil {
		return "", "", fatal(fault.ChecksumUnavailable, "%v; pin a checksum in the catalog entry instead", err)
	}
	return sum, file.Signature, nil
}

// VendorFile is a vendor's checksum file as far as it can be trusted:
// Text is what checksums may be taken from (of a clearsigned file, only
// its signed part), Signature what its signature says, Signer the
// fingerprint of the key that signed it when Verified.
type VendorFile struct {
	Text      []byte
	Signature string
	Signer    string
}

// checksumFile fetches the vendor's checksum file of src and checks its
// signature as the source's catalog entry says (SignatureURL, Clearsigned,
// SigningKeys). Every reader of a checksum file goes through here (or
// verifyChecksumFile, for one fetched its own way), so none trusts a
// checksum before its signature is checked.
func (a *Activities) checksumFile(ctx context.Context, src source.Source) (VendorFile, error) {
	data, err := a.fetchVendorFile(ctx, src.ChecksumURL, "checksum file", fault.ChecksumUnavailable,
		"fix the catalog entry's checksum_url or pin a checksum")
	if err != nil {
		return VendorFile{}, err
	}
	return a.verifyChecksumFile(ctx, src, data)
}

// verifyChecksumFile checks the signature of src's checksum file, whose
// bytes are data; a detached signature is fetched from src.SignatureURL.
// A signature that does not vouch for the file is a fatal
// signature_invalid.
func (a *Activities) verifyChecksumFile(ctx context.Context, src source.Source, data []byte) (VendorFile, error) {
	keys := a.keyring()
	var res signature.Result
	var err error
	switch {
	case src.Clearsigned:
		res, err = keys.Clearsigned(data, src.SigningKeys)
	case src.SignatureURL != "" && !keys.HoldsAny(src.SigningKeys):
		res = signature.Result{Status: signature.NotChecked, Text: data} // no key to check it with: not worth fetching
	case src.SignatureURL != "":
		var sig []byte
		sig, err = a.fetchVendorFile(ctx, src.SignatureURL, "signature file", fault.SignatureInvalid,
			"the catalog entry says the vendor signs its checksum file there: fix its signature_url, or, if the vendor no longer signs, remove signature_url and signing_keys from the entry")
		if err != nil {
			return VendorFile{}, err
		}
		res, err = keys.Detached(data, sig, src.SigningKeys)
	default:
		res = signature.Result{Status: signature.Unsigned, Text: data}
	}
	if errors.Is(err, signature.ErrInvalid) {
		return VendorFile{}, fatal(fault.SignatureInvalid, "checksum file %s: %v", src.ChecksumURL, err)
	} else if err != nil {
		return VendorFile{}, err
	}
	log := activity.GetLogger(ctx)
	switch res.Status {
	case signature.Verified:
		log.Info("checksum file signature verified", "checksum_url", src.ChecksumURL, "signer", res.Signer)
	case signature.NotChecked:
		log.Warn("checksum file is signed but none of its pinned keys is in the keyring: signature not checked",
			"checksum_url", src.ChecksumURL, "signing_keys", src.SigningKeys, "hint", "put the vendor's public key in the worker's --keyring directory")
	}
	return VendorFile{Text: res.Text, Signature: res.Status, Signer: res.Signer}, nil
}

// fetchVendorFile GETs a small file of a vendor's (a checksum file or its
// signature). Not reaching it, a 5xx or a 429 is a retryable
// checksum_unavailable; any other answer but 200 is fatal with code
// missing, its message ending with fix.
func (a *Activities) fetchVendorFile(ctx context.Context, rawURL, what, missing, fix string) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, rawURL, nil)
	if err != nil {
		return nil, fatal(missing, "%s %q: %v", what, rawURL, err)
	}
	resp, err := a.checksumClient(src, req).Do(req)
	if err != nil {
		return nil, retryable(fault.ChecksumUnavailable,
			"cannot reach the vendor's %s %s from the worker (%v): check the worker's internet access (proxy, firewall, DNS), or pin a checksum in the catalog entry",
			what, rawURL, err)
	}
	defer resp.Body.Close()
	switch {
	case resp.StatusCode >= 500 || resp.StatusCode == http.StatusTooManyRequests:
		return nil, retryable(fault.ChecksumUnavailable, "%s %s: the server answered %s", what, rawURL, resp.Status)
	case resp.StatusCode != http.StatusOK:
		return nil, fatal(missing, "%s %s: the server answered %s; %s", what, rawURL, resp.Status, fix)
	}
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxChecksumFile))
	if err != nil {
		return nil, retryable(fault.ChecksumUnavailable, "read %s %s: %v", what, rawURL, err)
	}
	return data, nil
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

// checksumClient is the client that fetches a checksum file: with the
// download's source credential set on the request when the file is on the
// credential's host, and kept to that host across redirects (Go's client
// would carry other headers anywhere).
func (a *Activities) checksumClient(src source.Source, req *http.Request) *http.Client {
	c, ok := a.Credentials.Get(src.Credential)
	if src.Credential == "" || !ok {
		return a.httpClient()
	}
	cred := &c
	cred.Apply(req)
	client := *a.httpClient()
	next := client.CheckRedirect
	client.CheckRedirect = func(r *http.Request, via []*http.Request) error {
		cred.Apply(r)
		if next != nil {
			return next(r, via)
		}
		if len(via) >= 10 {
			return errors.New("stopped after 10 redirects")
		}
		return nil
	}
	return &client
}
