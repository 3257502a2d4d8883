package agentclient

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/quantix/cloudimages/fault"
)

// Client talks to one node agent. Every failure is a *fault.Error: the
// agent's own error when it answered with one, node_unreachable (retryable)
// when it did not answer.
type Client struct {
	base  string
	token string
	http  *http.Client
	tls   bool // an address without a scheme is https
}

// Option changes how a Client reaches its agent.
type Option func(*Client)

// WithTLS makes the client trust the agents' certificates as cfg says
// (its RootCAs: the CA of --agent-ca-file). An address with no scheme is
// then reached over https. A nil cfg changes nothing.
func WithTLS(cfg *tls.Config) Option {
	return func(c *Client) {
		if cfg == nil {
			return
		}
		c.tls = true
		c.http.Transport = &http.Transport{
			Proxy:               http.ProxyFromEnvironment,
			TLSClientConfig:     cfg.Clone(),
			TLSHandshakeTimeout: 10 * time.Second,
			IdleConnTimeout:     90 * time.Second,
			ForceAttemptHTTP2:   true,
		}
	}
}

// New returns a client for the agent at address ("host:port" or a URL).
func New(address, token string, opts ...Option) *Client {
	c := &Client{
		token: token,
		// Every call is small; a node that takes longer is as good as down.
		http: &http.Client{Timeout: 10 * time.Second},
	}
	for _, o := range opts {
		o(c)
	}
	base := address
	if !strings.Contains(base, "://") {
		scheme := "http://"
		if c.tls {
			scheme = "https://"
		}
		base = scheme + base
	}
	c.base = strings.TrimRight(base, "/")
	return c
}

// Health asks the agent for its pools and load.
func (c *Client) Health(ctx context.Context) (Health, error) {
	var h Health
	_, err := c.do(ctx, http.MethodGet, "/v1/health", nil, &h)
	return h, err
}

// StartDownload starts (or, for the same id and request, finds) a download.
// A job that was cancelled, or failed with a retryable error, starts again;
// one that failed for good is returned as it is. Another request under the
// same id, or another id writing the same file, is a conflict. On a shared
// pool, the same id started on a second node takes over the partial data
// the first one left (a failover).
func (c *Client) StartDownload(ctx context.Context, req DownloadRequest) (Download, error) {
	var d Download
	_, err := c.do(ctx, http.MethodPost, "/v1/downloads", req, &d)
	return d, err
}

// Download returns the state of a download.
func (c *Client) Download(ctx context.Context, id string) (Download, error) {
	var d Download
	_, err := c.do(ctx, http.MethodGet, "/v1/downloads/"+url.PathEscape(id), nil, &d)
	return d, err
}

// DownloadAfter is Download held by the agent (FeatureLongPoll) until the
// job is no longer at version after: at once when its state changed, when
// only its bytes moved a second after the request at the earliest, and at
// the latest after wait (then it comes back still at after). An agent
// without the feature answers at once, with Version 0. The client's usual
// 10 s bound does not apply: ctx bounds the request, and should allow wait
// and then some for the answer to come.
func (c *Client) DownloadAfter(ctx context.Context, id string, after int64, wait time.Duration) (Download, error) {
	var d Download
	q := url.Values{"after": {strconv.FormatInt(after, 10)}, "wait": {wait.String()}}
	_, err := c.doWith(ctx, c.longPoll(), http.MethodGet, "/v1/downloads/"+url.PathEscape(id)+"?"+q.Encode(), nil, &d)
	return d, err
}

// longPoll is the client's HTTP client without its overall timeout, for
// requests the agent holds: their context bounds them instead.
func (c *Client) longPoll() *http.Client {
	hc := *c.http
	hc.Timeout = 0
	return &hc
}

// CancelDownload stops a download and removes its partial data. A download
// the agent does not know is not an error: there is nothing left to remove.
func (c *Client) CancelDownload(ctx context.Context, id string) error {
	_, err := c.do(ctx, http.MethodDelete, "/v1/downloads/"+url.PathEscape(id), nil, nil)
	if fe, ok := fault.As(err); ok && fe.Code == fault.NotFound {
		return nil
	}
	return err
}

// PauseDownload stops a download and keeps its partial data: the same
// request started again resumes from it. A download that already ended
// (or is past its transfer) answers conflict with its state; the returned
// Download is the job as the pause left it.
func (c *Client) PauseDownload(ctx context.Context, id string) (Download, error) {
	var d Download
	_, err := c.do(ctx, http.MethodPost, "/v1/downloads/"+url.PathEscape(id)+"/pause", nil, &d)
	return d, err
}

// DeleteFile removes a published image from a pool. A file that is already
// gone is not an error.
func (c *Client) DeleteFile(ctx context.Context, poolID, fileName string) error {
	_, err := c.do(ctx, http.MethodDelete, "/v1/pools/"+url.PathEscape(poolID)+"/files/"+url.PathEscape(fileName), nil, nil)
	if fe, ok := fault.As(err); ok && fe.Code == fault.NotFound {
		return nil
	}
	return err
}

// Link makes name, in a pool's images folder, a hard link to the
// published file target, replacing what name was in one atomic step: a
// reader of the old file keeps reading it. Only agents whose health names
// FeatureLink have the route.
func (c *Client) Link(ctx context.Context, poolID, name, target string) (Link, error) {
	var l Link
	_, err := c.do(ctx, http.MethodPut, "/v1/pools/"+url.PathEscape(poolID)+"/links/"+url.PathEscape(name), LinkRequest{Target: target}, &l)
	return l, err
}

func (c *Client) do(ctx context.Context, method, path string, in, out any) (int, error) {
	return c.doWith(ctx, c.http, method, path, in, out)
}

func (c *Client) doWith(ctx context.Context, hc *http.Client, method, path string, in, out any) (int, error) {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return 0, fault.New(fault.Internal, "encode request: %v", err)
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, body)
	if err != nil {
		return 0, fault.New(fault.InvalidRequest, "node address %q: %v", c.base, err)
	}
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	resp, err := hc.Do(req)
	if err != nil {
		if ctxErr := ctx.Err(); ctxErr != nil && errors.Is(err, ctxErr) {
			return 0, ctxErr
		}
		if untrusted(err) {
			return 0, fault.Retryable(fault.NodeUnreachable, "node agent at %s: its TLS certificate is not trusted (%v): give the worker --agent-ca-file with the CA that signed the agents' certificates (--tls-cert)", c.base, err)
		}
		return 0, connError{fault.Retryable(fault.NodeUnreachable, "node agent at %s does not answer: %v", c.base, err), err}
	}
	defer resp.Body.Close()
	return resp.StatusCode, c.answer(resp, method, path, out)
}

// answer reads an agent's answer into out, or its error.
func (c *Client) answer(resp *http.Response, method, path string, out any) error {
	data, err := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
	if err != nil {
		return connError{fault.Retryable(fault.NodeUnreachable, "node agent at %s: reading answer: %v", c.base, err), err}
	}
	if resp.StatusCode >= 400 {
		var eb fault.Body
		if json.Unmarshal(data, &eb) == nil && eb.Error != nil && eb.Error.Code != "" {
			return eb.Error
		}
		retry := resp.StatusCode >= 500
		return &fault.Error{Code: fault.NodeUnreachable, Retryable: retry,
			Message: fmt.Sprintf("node agent at %s answered %s to %s %s", c.base, resp.Status, method, path)}
	}
	if out != nil && len(data) > 0 {
		if err := json.Unmarshal(data, out); err != nil {
			return fault.Retryable(fault.NodeUnreachable, "node agent at %s sent bad JSON: %v", c.base, err)
		}
	}
	return nil
}

// untrusted reports whether err is a TLS certificate the client could not
// verify.
func untrusted(err error) bool {
	var verr *tls.CertificateVerificationError
	var unknown x509.UnknownAuthorityError
	var host x509.HostnameError
	return errors.As(err, &verr) || errors.As(err, &unknown) || errors.As(err, &host)
}

// StartUpload creates (or, for the same id and request, finds) a node-side
// upload that waits for its bytes. Another request under the same id is a
// conflict.
func (c *Client) StartUpload(ctx context.Context, req UploadRequest) (Download, error) {
	var d Download
	_, err := c.do(ctx, http.MethodPut, UploadPath(req.ID), req, &d)
	return d, err
}

// Upload returns where a node-side upload stands: its offset.
func (c *Client) Upload(ctx context.Context, id string) (Upload, error) {
	var u Upload
	_, err := c.do(ctx, http.MethodGet, UploadPath(id), nil, &u)
	return u, err
}

// WriteUpload sends body, size bytes (-1: unknown), to go at offset of an
// upload, and returns the upload as the node has it once the body is
// written and synced: its offset then counts every byte the node kept,
// also when the body was cut short. The call has no overall timeout (the
// node stops a body that stalls); ctx ends it.
func (c *Client) WriteUpload(ctx context.Context, id string, offset int64, body io.Reader, size int64) (Upload, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPatch, c.base+UploadPath(id), body)
	if err != nil {
		return Upload{}, fault.New(fault.InvalidRequest, "node address %q: %v", c.base, err)
	}
	req.ContentLength = size
	if size == 0 {
		req.Body = http.NoBody
	}
	req.Header.Set("Content-Type", "application/offset+octet-stream")
	req.Header.Set(OffsetHeader, strconv.FormatInt(offset, 10))
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	stream := &http.Client{Transport: c.http.Transport}
	resp, err := stream.Do(req)
	if err != nil {
		if ctxErr := ctx.Err(); ctxErr != nil && errors.Is(err, ctxErr) {
			return Upload{}, ctxErr
		}
		return Upload{}, fault.Retryable(fault.NodeUnreachable, "node agent at %s: sending the upload's bytes: %v", c.base, err)
	}
	defer resp.Body.Close()
	var u Upload
	return u, c.answer(resp, http.MethodPatch, UploadPath(id), &u)
}

// connError is node_unreachable with the network error under it, so that
// Refused and Dropped can tell how the connection failed.
type connError struct {
	fe    *fault.Error
	cause error
}

func (e connError) Error() string   { return e.fe.Error() }
func (e connError) Unwrap() []error { return []error{e.fe, e.cause} }

// Refused reports whether the agent's host refused the connection: the
// host is up and nothing listens on the agent's port, so the agent is not
// running (killed, crashed, stopped). A frozen agent or a network that
// drops packets does not refuse: it leaves the call to time out.
func Refused(err error) bool {
	return errors.Is(err, syscall.ECONNREFUSED)
}

// Dropped reports whether a connection to the agent broke under a call:
// reset, or closed before the whole answer came, as the connections of an
// agent that dies are. Alone it proves little (a restart, a proxy); a
// refused connection right after it says the agent is gone.
func Dropped(err error) bool {
	return errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE) ||
		errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF)
}
