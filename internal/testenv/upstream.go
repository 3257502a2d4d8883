package testenv

import (
	"crypto/sha256"
	"crypto/sha512"
	"crypto/tls"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"math/rand"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// Upstream is a local image mirror for tests: an HTTP server on 127.0.0.1
// that serves files with ETag, Last-Modified, Range and If-Range, counts
// what it serves, and misbehaves on request (see Fault). It is safe for
// concurrent use; it stops when the test ends. The bad inputs it serves
// (archives, truncated or corrupt streams, decompression bombs) are made
// by badinput.go's helpers: ZipOf, TarOf, XzOf, ZeroBomb and the others.
type Upstream struct {
	srv     *httptest.Server
	closing chan struct{}

	mu      sync.Mutex
	files   map[string]*upstreamFile
	headers []http.Header // of every request, in order
}

// Fault makes the mirror misbehave for one file. Faults combine: Status is
// answered first, then the file is served with the others applied.
type Fault struct {
	// Status lists statuses to answer, one per request, before the file is
	// served normally: {500, 503} fails the first two requests. 404, 410 or
	// 403 repeated enough times makes a file that is not there.
	Status []int
	// DropAfterBytes closes the connection after this many body bytes of a
	// response (counted per response, so a resuming client makes progress).
	DropAfterBytes int64
	// StallAfterBytes stops sending after this many body bytes of a
	// response, keeping the connection open until the client gives up: a
	// mirror that stalls mid-body.
	StallAfterBytes int64
	// Drops is how many responses DropAfterBytes or StallAfterBytes cut;
	// 0 means every one.
	Drops int
	// NoRange ignores Range and If-Range: every answer is 200 with the
	// whole file, and Accept-Ranges is not sent.
	NoRange bool
	// ChangeETagAfter gives the file a new ETag and Last-Modified after
	// this many requests (the bytes stay the same), as when a mirror
	// republishes a file mid-download.
	ChangeETagAfter int
	// WrongBytes serves the file with one byte changed in the middle.
	WrongBytes bool
	// BytesPerSecond trickles the body at about this rate.
	BytesPerSecond int64
	// HTML answers 200 with an HTML error page instead of the file, as
	// captive portals and broken mirrors do.
	HTML bool
	// Hang accepts the request and then sends nothing until the client
	// gives up or the test ends.
	Hang bool
	// ShortBy serves a file this many bytes shorter than the real one,
	// with a matching Content-Length: a truncated file on the mirror.
	ShortBy int64
	// NoLength sends the body without Content-Length (chunked).
	NoLength bool
	// Endless sends the file without Content-Length and then zeros, with
	// no end, until the client hangs up: a runaway body.
	Endless bool
	// WeakETag sends the ETag as a weak one (W/"…"), which If-Range may
	// not carry.
	WeakETag bool
	// RedirectTo answers 302 Found with this Location instead of the file.
	RedirectTo string
	// LongerBy announces the file's Content-Length but sends this many
	// zero bytes more after it, on a connection it then closes (a 200 of
	// the whole file, whatever the request asked).
	LongerBy int64
	// ETag serves the file under this (strong) ETag and a Last-Modified a
	// day later than the default: a mirror whose validators differ from
	// another's serving the same bytes.
	ETag string
	// RequireHeader ("Name: value") answers 401 to a request without that
	// header and value: a mirror behind basic auth or a token.
	RequireHeader string
}

type upstreamFile struct {
	data        []byte
	generation  int // bumped when the ETag changes
	etagChanged bool
	modTime     time.Time
	notModified int // 304s answered to conditional requests
	fault       Fault
	requests    int
	inFlight    int // responses being sent now
	dropped     int
	bytesServed int64
}

// NewUpstream starts a mirror on 127.0.0.1 and stops it when the test ends.
func NewUpstream(t testing.TB) *Upstream {
	t.Helper()
	u := &Upstream{closing: make(chan struct{}), files: map[string]*upstreamFile{}}
	u.srv = httptest.NewServer(http.HandlerFunc(u.serve))
	t.Cleanup(func() {
		close(u.closing) // releases hanging and trickling handlers first
		u.srv.CloseClientConnections()
		u.srv.Close()
	})
	return u
}

// NewTLSUpstream is NewUpstream over HTTPS, with ca's server certificate
// (make it with NewCA for 127.0.0.1 and whatever names the test uses).
func NewTLSUpstream(t testing.TB, ca CA) *Upstream {
	t.Helper()
	u := &Upstream{closing: make(chan struct{}), files: map[string]*upstreamFile{}}
	u.srv = httptest.NewUnstartedServer(http.HandlerFunc(u.serve))
	u.srv.TLS = &tls.Config{Certificates: []tls.Certificate{ca.Cert}}
	u.srv.StartTLS()
	t.Cleanup(func() {
		close(u.closing)
		u.srv.CloseClientConnections()
		u.srv.Close()
	})
	return u
}

// Addr returns the mirror's host:port.
func (u *Upstream) Addr() string { return u.srv.Listener.Addr().String() }

// URL returns the base URL of the mirror, e.g. http://127.0.0.1:PORT.
func (u *Upstream) URL() string { return u.srv.URL }

// FileURL returns the URL of a file, whether it exists or not (for 404 tests).
func (u *Upstream) FileURL(name string) string { return u.srv.URL + "/" + name }

// AddFile serves data at /name (replacing any file of that name, its fault
// and counters) and returns its URL. name may contain '/' for vendor-like
// layouts such as "noble/current/noble.img".
func (u *Upstream) AddFile(name string, data []byte) string {
	u.mu.Lock()
	defer u.mu.Unlock()
	f := &upstreamFile{data: data, modTime: time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)}
	if old, ok := u.files[name]; ok {
		// A file published again is a new version: new validators, so a
		// conditional request sees the change.
		f.generation, f.modTime = old.generation+1, old.modTime.Add(time.Hour)
	}
	u.files[name] = f
	return u.FileURL(name)
}

// NotModified returns how many conditional requests for a file (with
// If-None-Match or If-Modified-Since) the mirror answered 304 Not Modified.
func (u *Upstream) NotModified(name string) int {
	u.mu.Lock()
	defer u.mu.Unlock()
	if f, ok := u.files[name]; ok {
		return f.notModified
	}
	return 0
}

// SetFault sets (or, with Fault{}, clears) the fault of a file and resets
// its fault counters. The file must have been added.
func (u *Upstream) SetFault(name string, f Fault) {
	u.mu.Lock()
	defer u.mu.Unlock()
	file, ok := u.files[name]
	if !ok {
		panic(fmt.Sprintf("testenv.Upstream.SetFault: no file %q; AddFile it first", name))
	}
	file.fault = f
	file.dropped = 0
}

// BytesServed returns how many body bytes of a file the mirror has sent.
func (u *Upstream) BytesServed(name string) int64 {
	u.mu.Lock()
	defer u.mu.Unlock()
	if f, ok := u.files[name]; ok {
		return f.bytesServed
	}
	return 0
}

// Requests returns how many requests for a file the mirror has answered.
func (u *Upstream) Requests(name string) int {
	u.mu.Lock()
	defer u.mu.Unlock()
	if f, ok := u.files[name]; ok {
		return f.requests
	}
	return 0
}

// InFlight returns how many responses for a file the mirror is sending
// now: 0 once every handler has returned, so nothing more can be sent.
func (u *Upstream) InFlight(name string) int {
	u.mu.Lock()
	defer u.mu.Unlock()
	if f, ok := u.files[name]; ok {
		return f.inFlight
	}
	return 0
}

// Headers returns the headers of every request the mirror received, in
// order: tests look for a credential where it must not be.
func (u *Upstream) Headers() []http.Header {
	u.mu.Lock()
	defer u.mu.Unlock()
	return slices.Clone(u.headers)
}

// SHA256 returns "sha256:HEX" of a file's real bytes.
func (u *Upstream) SHA256(name string) string { return SHA256(u.data(name)) }

// SHA512 returns "sha512:HEX" of a file's real bytes.
func (u *Upstream) SHA512(name string) string { return SHA512(u.data(name)) }

func (u *Upstream) data(name string) []byte {
	u.mu.Lock()
	defer u.mu.Unlock()
	f, ok := u.files[name]
	if !ok {
		panic(fmt.Sprintf("testenv.Upstream: no file %q", name))
	}
	return f.data
}

// Checksum file formats for AddChecksumFile.
const (
	SHA256SUMS    = "SHA256SUMS"    // GNU: "HEX  name" (Ubuntu)
	SHA256SUMSBin = "SHA256SUMS*"   // GNU binary mode: "HEX *name"
	SHA512SUMS    = "SHA512SUMS"    // GNU: "HEX  name" (Debian)
	CHECKSUMBSD   = "CHECKSUM"      // BSD: "SHA256 (name) = HEX" (Fedora, Rocky, Alma)
	CHECKSUMBSD5  = "CHECKSUM-512"  // BSD with SHA512
	checksumNoise = "# generated\n" // vendors put comments and other files in
)

// AddChecksumFile publishes, at /path, a vendor-style checksum file listing
// the given files (by their base names, as vendors do) in one of the
// formats above, among a line for an unrelated file. It returns its URL.
func (u *Upstream) AddChecksumFile(path, format string, files ...string) string {
	var b strings.Builder
	b.WriteString(checksumNoise)
	other := []byte("another file")
	lines := append([]string{"other-image.img"}, files...)
	for i, name := range lines {
		data := other
		if i > 0 {
			data = u.data(name)
		}
		base := name[strings.LastIndex(name, "/")+1:]
		switch format {
		case SHA256SUMS:
			fmt.Fprintf(&b, "%s  %s\n", hexOf(SHA256(data)), base)
		case SHA256SUMSBin:
			fmt.Fprintf(&b, "%s *%s\n", hexOf(SHA256(data)), base)
		case SHA512SUMS:
			fmt.Fprintf(&b, "%s  %s\n", hexOf(SHA512(data)), base)
		case CHECKSUMBSD:
			fmt.Fprintf(&b, "SHA256 (%s) = %s\n", base, hexOf(SHA256(data)))
		case CHECKSUMBSD5:
			fmt.Fprintf(&b, "SHA512 (%s) = %s\n", base, hexOf(SHA512(data)))
		default:
			panic(fmt.Sprintf("testenv.Upstream.AddChecksumFile: unknown format %q", format))
		}
	}
	return u.AddFile(path, []byte(b.String()))
}

func hexOf(sum string) string { return sum[strings.Index(sum, ":")+1:] }

// SHA256 returns "sha256:HEX" of data.
func SHA256(data []byte) string {
	s := sha256.Sum256(data)
	return "sha256:" + hex.EncodeToString(s[:])
}

// SHA512 returns "sha512:HEX" of data.
func SHA512(data []byte) string {
	s := sha512.Sum512(data)
	return "sha512:" + hex.EncodeToString(s[:])
}

// QCOW2Image returns size deterministic bytes (size >= 1536) that form a
// qcow2 version 3 image the agent's inspection accepts: a header, an L1
// table and a refcount table, all inside the file and mapping no data
// cluster (the disk reads as zeros). The rest of the file is pseudo-random
// from seed, so different seeds give different sums; qemu would call those
// clusters leaked, which no transfer test cares about.
func QCOW2Image(size int, seed int64) []byte {
	const cluster = 512 // cluster bits 9: three small clusters of metadata
	if size < 3*cluster {
		size = 3 * cluster
	}
	data := make([]byte, size)
	rand.New(rand.NewSource(seed)).Read(data)
	clear(data[:3*cluster])
	copy(data, "QFI\xfb")
	binary.BigEndian.PutUint32(data[4:], 3)          // version
	binary.BigEndian.PutUint32(data[20:], 9)         // cluster bits: 512 bytes
	binary.BigEndian.PutUint64(data[24:], 2<<20)     // virtual size: 64 L1 entries of 32 KiB
	binary.BigEndian.PutUint32(data[36:], 64)        // L1 size
	binary.BigEndian.PutUint64(data[40:], cluster)   // L1 offset: cluster 1, all unallocated
	binary.BigEndian.PutUint64(data[48:], 2*cluster) // refcount table offset: cluster 2
	binary.BigEndian.PutUint32(data[56:], 1)         // refcount table clusters
	binary.BigEndian.PutUint32(data[96:], 4)         // refcount order: 16 bits
	binary.BigEndian.PutUint32(data[100:], 112)      // header length; no extensions follow
	return data
}

// HTMLPage is the page the HTML fault serves.
const HTMLPage = "<!DOCTYPE html>\n<html><head><title>Error</title></head><body>Mirror maintenance</body></html>\n"

func (u *Upstream) serve(w http.ResponseWriter, r *http.Request) {
	name := strings.TrimPrefix(r.URL.Path, "/")
	u.mu.Lock()
	u.headers = append(u.headers, r.Header.Clone())
	f, ok := u.files[name]
	if !ok {
		u.mu.Unlock()
		http.NotFound(w, r)
		return
	}
	f.requests++
	f.inFlight++
	defer func() {
		u.mu.Lock()
		f.inFlight--
		u.mu.Unlock()
	}()
	n := f.requests
	ft := f.fault
	if ft.ChangeETagAfter > 0 && n > ft.ChangeETagAfter && !f.etagChanged {
		f.etagChanged = true
		f.generation++
		f.modTime = f.modTime.Add(time.Hour)
	}
	etag := fmt.Sprintf(`"%x-%d"`, len(f.data), f.generation)
	if ft.WeakETag {
		etag = "W/" + etag
	}
	modTime := f.modTime
	if ft.ETag != "" {
		etag, modTime = ft.ETag, modTime.Add(24*time.Hour)
	}
	data := f.data
	if n > len(ft.Status) && notModified(r, etag, modTime) {
		f.notModified++
		u.mu.Unlock()
		w.Header().Set("ETag", etag)
		w.Header().Set("Last-Modified", modTime.Format(http.TimeFormat))
		w.WriteHeader(http.StatusNotModified)
		return
	}
	drop := (ft.DropAfterBytes > 0 || ft.StallAfterBytes > 0) && (ft.Drops == 0 || f.dropped < ft.Drops)
	if drop {
		f.dropped++
	}
	u.mu.Unlock()

	if n <= len(ft.Status) {
		http.Error(w, http.StatusText(ft.Status[n-1]), ft.Status[n-1])
		return
	}
	if name, value, ok := strings.Cut(ft.RequireHeader, ": "); ok && r.Header.Get(name) != value {
		w.Header().Set("WWW-Authenticate", `Basic realm="test mirror"`)
		http.Error(w, "credentials required", http.StatusUnauthorized)
		return
	}
	if ft.RedirectTo != "" {
		http.Redirect(w, r, ft.RedirectTo, http.StatusFound)
		return
	}
	if ft.Hang {
		select {
		case <-r.Context().Done():
		case <-u.closing:
		}
		return
	}
	if ft.HTML {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		u.write(w, r, name, []byte(HTMLPage), 0, -1, ft)
		return
	}
	if ft.WrongBytes {
		data = append([]byte(nil), data...)
		data[len(data)/2] ^= 0xff
	}
	if ft.ShortBy > 0 {
		data = data[:max(0, int64(len(data))-ft.ShortBy)]
	}
	h := w.Header()
	h.Set("Content-Type", "application/octet-stream")
	h.Set("ETag", etag)
	h.Set("Last-Modified", modTime.Format(http.TimeFormat))
	start, end, status := int64(0), int64(len(data)), http.StatusOK
	if !ft.NoRange {
		h.Set("Accept-Ranges", "bytes")
		if s, ok := parseRange(r.Header.Get("Range"), int64(len(data))); ok && ifRangeMatches(r.Header.Get("If-Range"), etag, modTime) {
			if s >= int64(len(data)) {
				h.Set("Content-Range", fmt.Sprintf("bytes */%d", len(data)))
				w.WriteHeader(http.StatusRequestedRangeNotSatisfiable)
				return
			}
			start, status = s, http.StatusPartialContent
			h.Set("Content-Range", fmt.Sprintf("bytes %d-%d/%d", start, end-1, len(data)))
		}
	}
	if ft.LongerBy > 0 {
		u.serveLonger(w, name, data, etag, ft.LongerBy)
		return
	}
	limit := int64(-1)
	if drop {
		limit = max(ft.DropAfterBytes, ft.StallAfterBytes)
	}
	if !ft.NoLength && !ft.Endless {
		h.Set("Content-Length", strconv.FormatInt(end-start, 10))
	}
	w.WriteHeader(status)
	if r.Method == http.MethodHead {
		return
	}
	u.write(w, r, name, data[start:end], status, limit, ft)
	if ft.Endless {
		zeros := make([]byte, 64<<10)
		for r.Context().Err() == nil && !u.closed() {
			u.write(w, r, name, zeros, status, -1, ft)
		}
	}
}

// serveLonger writes a raw response whose body runs extra bytes past its
// Content-Length, which net/http's ResponseWriter would refuse to send.
func (u *Upstream) serveLonger(w http.ResponseWriter, name string, data []byte, etag string, extra int64) {
	conn, buf, err := http.NewResponseController(w).Hijack()
	if err != nil {
		panic(err)
	}
	defer conn.Close()
	fmt.Fprintf(buf, "HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: %d\r\nETag: %s\r\nConnection: close\r\n\r\n", len(data), etag)
	buf.Write(data)
	buf.Write(make([]byte, extra))
	if buf.Flush() == nil {
		u.count(name, int64(len(data))+extra)
	}
}

// write sends body in chunks, trickled when asked, and aborts the
// connection after limit bytes when limit >= 0.
func (u *Upstream) write(w http.ResponseWriter, r *http.Request, name string, body []byte, status int, limit int64, ft Fault) {
	if status == 0 {
		w.Header().Set("Content-Length", strconv.Itoa(len(body)))
		w.WriteHeader(http.StatusOK)
	}
	chunk := 64 << 10
	var tick time.Duration
	if ft.BytesPerSecond > 0 {
		chunk = int(max(1, min(int64(chunk), ft.BytesPerSecond/20)))
		tick = time.Duration(float64(time.Second) * float64(chunk) / float64(ft.BytesPerSecond))
	}
	rc := http.NewResponseController(w)
	var sent int64
	for len(body) > 0 {
		n := min(len(body), chunk)
		if limit >= 0 && sent+int64(n) > limit {
			n = int(limit - sent)
		}
		if n > 0 {
			m, err := w.Write(body[:n])
			u.count(name, int64(m))
			sent += int64(m)
			body = body[m:]
			if err != nil {
				return
			}
		}
		if limit >= 0 && sent >= limit {
			_ = rc.Flush()
			if ft.StallAfterBytes > 0 {
				select {
				case <-r.Context().Done():
				case <-u.closing:
				}
				return
			}
			panic(http.ErrAbortHandler) // closes the connection mid-body
		}
		if tick > 0 {
			_ = rc.Flush()
			select {
			case <-time.After(tick):
			case <-r.Context().Done():
				return
			case <-u.closing:
				return
			}
		}
	}
}

func (u *Upstream) closed() bool {
	select {
	case <-u.closing:
		return true
	default:
		return false
	}
}

func (u *Upstream) count(name string, n int64) {
	u.mu.Lock()
	defer u.mu.Unlock()
	if f, ok := u.files[name]; ok {
		f.bytesServed += n
	}
}

// parseRange understands the one form download clients send: "bytes=N-".
func parseRange(h string, size int64) (int64, bool) {
	spec, ok := strings.CutPrefix(h, "bytes=")
	if !ok {
		return 0, false
	}
	from, to, ok := strings.Cut(spec, "-")
	if !ok || (to != "" && to != strconv.FormatInt(size-1, 10)) {
		return 0, false
	}
	n, err := strconv.ParseInt(from, 10, 64)
	if err != nil || n < 0 {
		return 0, false
	}
	return n, true
}

func ifRangeMatches(h, etag string, modTime time.Time) bool {
	if h == "" {
		return true
	}
	if strings.HasPrefix(h, `"`) || strings.HasPrefix(h, `W/`) {
		return h == etag
	}
	t, err := http.ParseTime(h)
	return err == nil && !modTime.Truncate(time.Second).After(t)
}

// notModified reports whether a GET's validators (If-None-Match, or else
// If-Modified-Since) say the client has the file as it is.
func notModified(r *http.Request, etag string, modTime time.Time) bool {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		return false
	}
	if inm := r.Header.Get("If-None-Match"); inm != "" {
		for _, t := range strings.Split(inm, ",") {
			if t = strings.TrimSpace(t); t == "*" || strings.TrimPrefix(t, "W/") == strings.TrimPrefix(etag, "W/") {
				return true
			}
		}
		return false
	}
	if ims, err := http.ParseTime(r.Header.Get("If-Modified-Since")); err == nil {
		return !modTime.Truncate(time.Second).After(ims)
	}
	return false
}

// FreePort returns a free TCP port on 127.0.0.1.
func FreePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("find a free port: %v", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}
