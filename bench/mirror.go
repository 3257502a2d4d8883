package main

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"
)

// mirror is the local HTTP server the downloads come from. GET
// /files/NAME serves DIR/NAME with Range, If-Range and a strong ETag;
// ?src=OTHER serves DIR/OTHER under NAME (many URLs, one file on disk) and
// ?bps=N trickles the body at about N bytes a second. Unthrottled bodies go
// out with sendfile, as from a real mirror. It counts what it serves.
type mirror struct {
	dir string
	srv *http.Server
	url string

	mu       sync.Mutex
	requests []*served
}

// served is one response: when it started, when its first body byte went
// out, and how many body bytes it sent so far.
type served struct {
	Name      string
	Range     string
	Start     time.Time
	FirstByte time.Time
	mu        sync.Mutex
	bytes     int64
}

func (s *served) add(n int) {
	s.mu.Lock()
	if s.FirstByte.IsZero() && n > 0 {
		s.FirstByte = time.Now()
	}
	s.bytes += int64(n)
	s.mu.Unlock()
}

func (s *served) snapshot() (bytes int64, first time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.bytes, s.FirstByte
}

func startMirror(dir string) (*mirror, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	m := &mirror{dir: dir, url: "http://" + ln.Addr().String()}
	m.srv = &http.Server{Handler: http.HandlerFunc(m.serve), ReadHeaderTimeout: 10 * time.Second}
	go m.srv.Serve(ln)
	return m, nil
}

func (m *mirror) close() { m.srv.Close() }

// fileURL is the URL of NAME, served from the file src at bps bytes a
// second (0: as fast as it goes).
func (m *mirror) fileURL(name, src string, bps int64) string {
	u := m.url + "/files/" + name
	var q []string
	if src != "" && src != name {
		q = append(q, "src="+src)
	}
	if bps > 0 {
		q = append(q, "bps="+strconv.FormatInt(bps, 10))
	}
	if len(q) > 0 {
		u += "?" + strings.Join(q, "&")
	}
	return u
}

func (m *mirror) serve(w http.ResponseWriter, r *http.Request) {
	name, ok := strings.CutPrefix(r.URL.Path, "/files/")
	if !ok || name == "" || strings.Contains(name, "/") {
		http.NotFound(w, r)
		return
	}
	src := name
	if s := r.URL.Query().Get("src"); s != "" {
		src = filepath.Base(s)
	}
	f, err := os.Open(filepath.Join(m.dir, src))
	if err != nil {
		http.NotFound(w, r)
		return
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	s := &served{Name: name, Range: r.Header.Get("Range"), Start: time.Now()}
	m.mu.Lock()
	m.requests = append(m.requests, s)
	m.mu.Unlock()
	w.Header().Set("ETag", fmt.Sprintf(`"%x-%x"`, fi.Size(), fi.ModTime().UnixNano()))
	var content io.ReadSeeker = f
	bps, _ := strconv.ParseInt(r.URL.Query().Get("bps"), 10, 64)
	if bps > 0 {
		content = &trickle{f: f, bps: bps, s: s}
		http.ServeContent(w, r, name, fi.ModTime(), content)
		return
	}
	cw := &countingWriter{ResponseWriter: w, s: s}
	http.ServeContent(cw, r, name, fi.ModTime(), content)
}

// countingWriter counts body bytes and keeps sendfile: ServeContent's copy
// reaches the connection's ReadFrom through it.
type countingWriter struct {
	http.ResponseWriter
	s *served
}

func (c *countingWriter) Write(b []byte) (int, error) {
	n, err := c.ResponseWriter.Write(b)
	c.s.add(n)
	return n, err
}

func (c *countingWriter) ReadFrom(r io.Reader) (int64, error) {
	c.s.add(0)
	n, err := c.ResponseWriter.(io.ReaderFrom).ReadFrom(r)
	c.s.add(int(n))
	return n, err
}

// trickle reads the file at about bps bytes a second, counting as it goes.
type trickle struct {
	f     *os.File
	bps   int64
	s     *served
	start time.Time
	read  int64
}

func (t *trickle) Seek(off int64, whence int) (int64, error) { return t.f.Seek(off, whence) }

func (t *trickle) Read(b []byte) (int, error) {
	if t.start.IsZero() {
		t.start = time.Now()
	}
	if max := t.bps / 20; int64(len(b)) > max && max > 0 {
		b = b[:max] // about 20 writes a second, so the rate is smooth
	}
	if wait := time.Duration(float64(t.read)/float64(t.bps)*float64(time.Second)) - time.Since(t.start); wait > 0 {
		time.Sleep(wait)
	}
	n, err := t.f.Read(b)
	t.read += int64(n)
	t.s.add(n)
	return n, err
}

// servedFor returns the responses for NAME, oldest first.
func (m *mirror) servedFor(name string) []*served {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []*served
	for _, s := range m.requests {
		if s.Name == name {
			out = append(out, s)
		}
	}
	return out
}

// bytesFor is the body bytes served so far for NAME, all requests.
func (m *mirror) bytesFor(name string) int64 {
	var n int64
	for _, s := range m.servedFor(name) {
		b, _ := s.snapshot()
		n += b
	}
	return n
}

// countByName is how many responses each name got.
func (m *mirror) countByName() map[string]int {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := map[string]int{}
	for _, s := range m.requests {
		out[s.Name]++
	}
	return out
}
