// Package tusclient uploads a file to the cloudimages API's /v1/uploads
// over the tus 1.0 resumable upload protocol: it creates the upload, or
// resumes the one it made for the same file before (found by a fingerprint
// kept under the user's cache directory), asks the server for its offset,
// and sends the rest, retrying from the server's offset when the
// connection drops. The `cloudimages images upload` command is built on it.
package tusclient

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/quantix/cloudimages/fault"
)

const tusVersion = "1.0.0"

// Client talks to one API.
type Client struct {
	// BaseURL is the API's, e.g. http://127.0.0.1:8080.
	BaseURL string
	// Token is the API's bearer token; empty sends none.
	Token string
	// HTTP makes the requests; nil uses a client without an overall
	// timeout (a PATCH lasts as long as the file takes).
	HTTP *http.Client
	// StateDir holds the fingerprints of unfinished uploads; empty uses
	// $XDG_CACHE_HOME/cloudimages/uploads (os.UserCacheDir).
	StateDir string
	// ChunkSize bounds one PATCH body; 0 sends the rest of the file in one
	// (the server keeps what arrives, so a dropped one loses nothing).
	ChunkSize int64
	// Retries is how many failed requests in a row are retried, waiting
	// longer each time (default 8); RetryDelay is the first wait (1s).
	Retries    int
	RetryDelay time.Duration
}

// Upload says what to upload where. Checksum ("sha256:HEX") and Format
// are optional; without a checksum the server computes one.
type Upload struct {
	Path     string
	PoolID   string
	Name     string
	Checksum string
	Format   string
}

// Progress is reported after each piece of the file is sent.
type Progress struct {
	Done, Total    int64
	BytesPerSecond float64
	Resumed        bool // the upload continues one made before
}

// Result is a finished upload: its URL and the id of its image, whose
// status then moves to READY (GET /v1/images/{id}).
type Result struct {
	URL     string
	ImageID string
	Resumed bool
}

// Do uploads the file, resuming the upload made for it before when the
// server still has it, and calls progress (which may be nil) as it goes.
func (c *Client) Do(ctx context.Context, up Upload, progress func(Progress)) (Result, error) {
	f, err := os.Open(up.Path)
	if err != nil {
		return Result{}, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return Result{}, err
	}
	if up.Name == "" {
		up.Name = filepath.Base(up.Path)
	}
	size := fi.Size()
	fp, err := c.fingerprint(up, fi)
	if err != nil {
		return Result{}, err
	}
	res := Result{}
	offset := int64(-1)
	if loc, ok := c.loadState(fp); ok {
		off, err := c.head(ctx, loc)
		switch {
		case err == nil:
			res.URL, res.Resumed, offset = loc, true, off
		case errors.Is(err, errGone):
			c.forget(fp) // failed, cancelled or expired: start again
		default:
			return Result{}, err
		}
	}
	if res.URL == "" {
		loc, err := c.create(ctx, up, size)
		if err != nil {
			return Result{}, err
		}
		res.URL, offset = loc, 0
		if err := c.saveState(fp, loc); err != nil {
			return Result{}, err
		}
	}
	res.ImageID = path.Base(res.URL)
	if err := c.send(ctx, f, res, offset, size, progress); err != nil {
		return res, err
	}
	c.forget(fp)
	return res, nil
}

// send PATCHes the file from offset to its end, retrying from the
// server's offset after a failure.
func (c *Client) send(ctx context.Context, f *os.File, res Result, offset, size int64, progress func(Progress)) error {
	meter := newMeter(offset)
	report := func(done int64) {
		if progress != nil {
			progress(Progress{Done: done, Total: size, BytesPerSecond: meter.rate(done), Resumed: res.Resumed})
		}
	}
	report(offset)
	failures := 0
	delay := c.retryDelay()
	for offset < size {
		n := size - offset
		if c.ChunkSize > 0 {
			n = min(n, c.ChunkSize)
		}
		next, err := c.patchFile(ctx, res.URL, f, offset, n, report)
		if err == nil {
			offset, failures, delay = next, 0, c.retryDelay()
			report(offset)
			continue
		}
		if ctx.Err() != nil || !retryable(err) {
			return err
		}
		failures++
		if failures > c.retries() {
			return fmt.Errorf("upload stopped after %d failed tries in a row (run the same command again to resume): %w", failures, err)
		}
		select {
		case <-time.After(delay):
		case <-ctx.Done():
			return ctx.Err()
		}
		delay = min(2*delay, 30*time.Second)
		// Where the server is now: it kept what arrived of the failed body.
		switch off, err := c.head(ctx, res.URL); {
		case err == nil:
			offset = off
		case errors.Is(err, errGone) || !retryable(err):
			return fmt.Errorf("the upload ended on the server (GET /v1/images/%s says why): %w", res.ImageID, err)
		}
	}
	return nil
}

func (c *Client) retries() int {
	if c.Retries > 0 {
		return c.Retries
	}
	return 8
}

func (c *Client) retryDelay() time.Duration {
	if c.RetryDelay > 0 {
		return c.RetryDelay
	}
	return time.Second
}

// errGone is a HEAD of an upload the server no longer takes bytes for.
var errGone = errors.New("the upload is gone")

func (c *Client) create(ctx context.Context, up Upload, size int64) (string, error) {
	meta := map[string]string{"pool_id": up.PoolID, "name": up.Name, "checksum": up.Checksum, "format": up.Format}
	keys := make([]string, 0, len(meta))
	for k, v := range meta {
		if v != "" {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	pairs := make([]string, 0, len(keys))
	for _, k := range keys {
		pairs = append(pairs, k+" "+base64.StdEncoding.EncodeToString([]byte(meta[k])))
	}
	req, err := c.request(ctx, http.MethodPost, c.endpoint(), nil)
	if err != nil {
		return "", err
	}
	req.Header.Set("Upload-Length", strconv.FormatInt(size, 10))
	req.Header.Set("Upload-Metadata", strings.Join(pairs, ","))
	resp, err := c.do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		return "", answerError(resp)
	}
	loc, err := url.Parse(resp.Header.Get("Location"))
	if err != nil || resp.Header.Get("Location") == "" {
		return "", fmt.Errorf("the API created an upload without a usable Location (%q)", resp.Header.Get("Location"))
	}
	return req.URL.ResolveReference(loc).String(), nil
}

func (c *Client) head(ctx context.Context, loc string) (int64, error) {
	req, err := c.request(ctx, http.MethodHead, loc, nil)
	if err != nil {
		return 0, err
	}
	resp, err := c.do(req)
	if err != nil {
		return 0, err
	}
	resp.Body.Close()
	switch {
	case resp.StatusCode == http.StatusNotFound || resp.StatusCode == http.StatusGone:
		return 0, errGone
	case resp.StatusCode != http.StatusOK:
		return 0, &fault.Error{Code: fault.NodeUnreachable, Retryable: resp.StatusCode >= 500 || resp.StatusCode == http.StatusLocked,
			Message: fmt.Sprintf("HEAD %s answered %s", loc, resp.Status)}
	}
	return strconv.ParseInt(resp.Header.Get("Upload-Offset"), 10, 64)
}

func (c *Client) patch(ctx context.Context, loc string, offset int64, body io.Reader, n int64) (int64, error) {
	req, err := c.request(ctx, http.MethodPatch, loc, body)
	if err != nil {
		return 0, err
	}
	req.ContentLength = n
	req.Header.Set("Content-Type", "application/offset+octet-stream")
	req.Header.Set("Upload-Offset", strconv.FormatInt(offset, 10))
	resp, err := c.do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusNoContent {
		return 0, answerError(resp)
	}
	return strconv.ParseInt(resp.Header.Get("Upload-Offset"), 10, 64)
}

func (c *Client) endpoint() string { return strings.TrimRight(c.BaseURL, "/") + "/v1/uploads" }

func (c *Client) request(ctx context.Context, method, u string, body io.Reader) (*http.Request, error) {
	req, err := http.NewRequestWithContext(ctx, method, u, body)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Tus-Resumable", tusVersion)
	if c.Token != "" {
		req.Header.Set("Authorization", "Bearer "+c.Token)
	}
	return req, nil
}

func (c *Client) do(req *http.Request) (*http.Response, error) {
	hc := c.HTTP
	if hc == nil {
		hc = http.DefaultClient
	}
	resp, err := hc.Do(req)
	if err != nil {
		if ctxErr := req.Context().Err(); ctxErr != nil {
			return nil, ctxErr
		}
		return nil, fault.Retryable(fault.NodeUnreachable, "%s %s: %v", req.Method, req.URL.Redacted(), err)
	}
	return resp, nil
}

// answerError turns an error answer into a *fault.Error: the API's own,
// retryable when another try may get through (409 and 423 ask the client
// to look at the offset again, 5xx are passing).
func answerError(resp *http.Response) error {
	data, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	var body fault.Body
	fe := &fault.Error{Code: fault.Internal, Message: fmt.Sprintf("the API answered %s", resp.Status)}
	if json.Unmarshal(data, &body) == nil && body.Error != nil && body.Error.Code != "" {
		fe = body.Error
	}
	switch resp.StatusCode {
	case http.StatusConflict, http.StatusLocked, http.StatusTooManyRequests:
		fe.Retryable = true
	default:
		fe.Retryable = resp.StatusCode >= 500
	}
	return fe
}

func retryable(err error) bool {
	fe, ok := fault.As(err)
	return ok && fe.Retryable
}

// fingerprint names a file's upload to this API and pool: the same file
// (path, size, modification time) uploaded to the same place again is
// the same upload, and resumes.
func (c *Client) fingerprint(up Upload, fi os.FileInfo) (string, error) {
	abs, err := filepath.Abs(up.Path)
	if err != nil {
		return "", err
	}
	h := sha256.New()
	fmt.Fprintf(h, "%s\n%s\n%s\n%s\n%s\n%d\n%d\n", strings.TrimRight(c.BaseURL, "/"), up.PoolID, up.Name, up.Checksum, abs, fi.Size(), fi.ModTime().UnixNano())
	return hex.EncodeToString(h.Sum(nil))[:32], nil
}

func (c *Client) stateDir() (string, error) {
	if c.StateDir != "" {
		return c.StateDir, nil
	}
	dir, err := os.UserCacheDir()
	if err != nil {
		return "", fmt.Errorf("no cache directory to remember uploads in (%v): set XDG_CACHE_HOME", err)
	}
	return filepath.Join(dir, "cloudimages", "uploads"), nil
}

type state struct {
	URL string `json:"url"`
}

func (c *Client) loadState(fp string) (string, bool) {
	dir, err := c.stateDir()
	if err != nil {
		return "", false
	}
	data, err := os.ReadFile(filepath.Join(dir, fp+".json"))
	if err != nil {
		return "", false
	}
	var st state
	if json.Unmarshal(data, &st) != nil || st.URL == "" {
		return "", false
	}
	return st.URL, true
}

func (c *Client) saveState(fp, loc string) error {
	dir, err := c.stateDir()
	if err != nil {
		return err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	data, _ := json.Marshal(state{URL: loc})
	tmp := filepath.Join(dir, fp+".json.tmp")
	if err := os.WriteFile(tmp, data, 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, filepath.Join(dir, fp+".json"))
}

func (c *Client) forget(fp string) {
	if dir, err := c.stateDir(); err == nil {
		_ = os.Remove(filepath.Join(dir, fp+".json"))
	}
}

// patchFile sends n bytes of f from offset in one PATCH, reporting the
// bytes sent as they go.
func (c *Client) patchFile(ctx context.Context, loc string, f *os.File, offset, n int64, report func(int64)) (int64, error) {
	if _, err := f.Seek(offset, io.SeekStart); err != nil {
		return 0, err
	}
	stop := make(chan struct{})
	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		tick := time.NewTicker(200 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-stop:
				return
			case <-tick.C:
				// The file's position is what has been sent: sendfile
				// moves it as it goes.
				if pos, err := f.Seek(0, io.SeekCurrent); err == nil {
					report(pos)
				}
			}
		}
	}()
	next, err := c.patch(ctx, loc, offset, fileBody{f: f, end: offset + n}, n)
	close(stop)
	<-stopped
	return next, err
}

// fileBody is a PATCH body read from the file's own position. Being a
// syscall.Conn, it lets the HTTP client send it over a TCP connection
// with sendfile(2) (net.TCPConn.ReadFrom): the file's bytes go to the
// socket without being copied through the client's memory. It is an
// io.ReadCloser so that the client does not wrap it in one (which would
// hide SyscallConn); Close leaves the file to Do. Read ends at end (the
// client reads on after Content-Length to check that nothing is left;
// sendfile itself is bounded by Content-Length).
type fileBody struct {
	f   *os.File
	end int64
}

func (b fileBody) Read(p []byte) (int, error) {
	pos, err := b.f.Seek(0, io.SeekCurrent)
	if err != nil {
		return 0, err
	}
	if pos >= b.end {
		return 0, io.EOF
	}
	return b.f.Read(p[:min(int64(len(p)), b.end-pos)])
}

func (b fileBody) Close() error { return nil }

func (b fileBody) SyscallConn() (syscall.RawConn, error) { return b.f.SyscallConn() }

// meter measures the rate over the last few seconds.
type meter struct {
	at    time.Time
	bytes int64
	value float64
}

func newMeter(start int64) *meter { return &meter{at: time.Now(), bytes: start} }

func (m *meter) rate(done int64) float64 {
	if dt := time.Since(m.at); dt >= time.Second {
		m.value = float64(done-m.bytes) / dt.Seconds()
		m.at, m.bytes = time.Now(), done
	}
	return m.value
}
