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
	// BuildSignature is what a subscription's check found of the signature
	// of the checksum file that named the build's checksum; it stands for
	// the given checksum's signature status (only with a Version).
	BuildSignature string
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
	if src.Checksum != "" && src.Version != "" && in.BuildSignature != "" {
		src.Signature = in.BuildSignature // a build a subscription's check found in a checksum file
	}
	if src.Checksum != "" && in.Source.Signature != "" {
		src.Signature = in.Source.Signature // a copy of an image (ResolveImageSource) is what its source was
	}
	listed := ""
	if src.Checksum == "" {
		f, err := a.fetchChecksumFile(ctx, src, Validators{})
		switch {
		case err == nil:
			src.Checksum, src.Signature, listed = f.Checksum, f.Signature, f.Listed
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

func isCode(err error, code string) bool {
	var appErr *temporal.ApplicationError
	return errors.As(err, &appErr) && appErr.Type() == code
}

// Validators make a fetch of a checksum file conditional: the ETag and
// Last-Modified of the copy fetched before.
type Validators struct {
	ETag         string
	LastModified string
}

// ChecksumFile is what a vendor's checksum file says about an image, once
// its signature is checked.
type ChecksumFile struct {
	Checksum string // "sha256:HEX" or "sha512:HEX"; "" when NotModified
	Listed   string // the name the file lists the image under
	// Signature is what the file's signature said (signature.Verified,
	// Unsigned or NotChecked); "" when NotModified.
	Signature string
	Validators
	// NotModified: the server answered 304 to a conditional fetch, so the
	// file (and the build it names) is the one fetched, and checked, before.
	NotModified bool
}

// fetchChecksumFile fetches the vendor's checksum file of src (with
// If-None-Match and If-Modified-Since when given validators), checks its
// signature as the catalog entry says, and finds the image's checksum in
// its signed text. Every fetch of a checksum file, a download's and a
// subscription's check, goes through here, so none trusts a checksum
// before its signature is checked.
func (a *Activities) fetchChecksumFile(ctx context.Context, src source.Source, cond Validators) (ChecksumFile, error) {
	if src.ChecksumURL == "" {
		return ChecksumFile{}, fatal(fault.ChecksumUnavailable, "no checksum for %s: give one (\"checksum\": \"sha256:HEX\") or accept an unverified image", src.URL)
	}
	data, got, err := a.fetchVendorFile(ctx, src, src.ChecksumURL, cond, "checksum file", fault.ChecksumUnavailable,
		"fix the catalog entry's checksum_url or pin a checksum")
	if err != nil {
		return ChecksumFile{}, err
	}
	if data == nil {
		return ChecksumFile{Validators: got, NotModified: true}, nil
	}
	file, err := a.verifyChecksumFile(ctx, src, data)
	if err != nil {
		return ChecksumFile{}, err
	}
	fs, err := catalog.LookupFile(file.Text, src.URL, src.ChecksumURL)
	if err != nil {
		return ChecksumFile{}, fatal(fault.ChecksumUnavailable, "%v; pin a checksum in the catalog entry instead", err)
	}
	return ChecksumFile{Checksum: fs.Sum, Listed: fs.Name, Signature: file.Signature, Validators: got}, nil
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
		sig, _, err = a.fetchVendorFile(ctx, src, src.SignatureURL, Validators{}, "signature file", fault.SignatureInvalid,
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
// signature, with src's credential when it is for that host), conditionally when given validators: a 304 then returns nil
// data and the validators. Not reaching it, a 5xx or a 429 is a retryable
// checksum_unavailable; any other answer but 200 is fatal with code
// missing, its message ending with fix.
func (a *Activities) fetchVendorFile(ctx context.Context, src source.Source, rawURL string, cond Validators, what, missing, fix string) ([]byte, Validators, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, rawURL, nil)
	if err != nil {
		return nil, Validators{}, fatal(missing, "%s %q: %v", what, rawURL, err)
	}
	if cond.ETag != "" {
		req.Header.Set("If-None-Match", cond.ETag)
	}
	if cond.LastModified != "" {
		req.Header.Set("If-Modified-Since", cond.LastModified)
	}
	resp, err := a.checksumClient(src, req).Do(req)
	if err != nil {
		return nil, Validators{}, retryable(fault.ChecksumUnavailable,
			"cannot reach the vendor's %s %s from the worker (%v): check the worker's internet access (proxy, firewall, DNS), or pin a checksum in the catalog entry",
			what, rawURL, err)
	}
	defer resp.Body.Close()
	got := Validators{ETag: resp.Header.Get("ETag"), LastModified: resp.Header.Get("Last-Modified")}
	switch {
	case resp.StatusCode == http.StatusNotModified && cond != (Validators{}):
		if got == (Validators{}) {
			got = cond
		}
		return nil, got, nil
	case resp.StatusCode >= 500 || resp.StatusCode == http.StatusTooManyRequests:
		return nil, Validators{}, retryable(fault.ChecksumUnavailable, "%s %s: the server answered %s", what, rawURL, resp.Status)
	case resp.StatusCode != http.StatusOK:
		return nil, Validators{}, fatal(missing, "%s %s: the server answered %s; %s", what, rawURL, resp.Status, fix)
	}
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxChecksumFile))
	if err != nil {
		return nil, Validators{}, retryable(fault.ChecksumUnavailable, "read %s %s: %v", what, rawURL, err)
	}
	if data == nil {
		data = []byte{} // an empty 200 is a file, not a 304
	}
	return data, got, nil
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
