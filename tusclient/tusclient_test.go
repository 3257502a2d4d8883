package tusclient

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"testing"
)

// sendfileCheck is a transport that notes whether each PATCH body could
// go out with sendfile: net/http passes the body to the connection's
// ReadFrom only when it is the syscall.Conn itself, not wrapped.
type sendfileCheck struct {
	mu       sync.Mutex
	patches  int
	wrapped  int
	delegate http.RoundTripper
}

func (s *sendfileCheck) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.Method == http.MethodPatch {
		s.mu.Lock()
		s.patches++
		if _, ok := req.Body.(syscall.Conn); !ok {
			s.wrapped++
		}
		s.mu.Unlock()
	}
	return s.delegate.RoundTrip(req)
}

// A fake tus server that keeps the bytes, and the client's upload of a
// file in pieces: every byte arrives in order, every PATCH body is one
// sendfile can send, and progress ends at the file's size.
func TestUploadSendsTheFileWithSendfile(t *testing.T) {
	data := make([]byte, 3<<20+17)
	for i := range data {
		data[i] = byte(i * 7)
	}
	path := filepath.Join(t.TempDir(), "disk.img")
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var got []byte
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Tus-Resumable", tusVersion)
		switch r.Method {
		case http.MethodPost:
			w.Header().Set("Location", "/v1/uploads/u1")
			w.WriteHeader(http.StatusCreated)
		case http.MethodPatch:
			off, _ := strconv.Atoi(r.Header.Get("Upload-Offset"))
			b, err := io.ReadAll(r.Body)
			mu.Lock()
			defer mu.Unlock()
			if err != nil || off != len(got) {
				w.WriteHeader(http.StatusConflict)
				return
			}
			got = append(got, b...)
			w.Header().Set("Upload-Offset", strconv.Itoa(len(got)))
			w.WriteHeader(http.StatusNoContent)
		}
	}))
	defer srv.Close()
	check := &sendfileCheck{delegate: http.DefaultTransport}
	c := &Client{BaseURL: srv.URL, StateDir: t.TempDir(), ChunkSize: 1 << 20, HTTP: &http.Client{Transport: check}}
	var last Progress
	res, err := c.Do(context.Background(), Upload{Path: path, PoolID: "p"}, func(p Progress) { last = p })
	if err != nil {
		t.Fatal(err)
	}
	if res.ImageID != "u1" || string(got) != string(data) {
		t.Fatalf("upload %q: the server got %d bytes, want the file's %d", res.ImageID, len(got), len(data))
	}
	if check.patches != 4 || check.wrapped != 0 {
		t.Errorf("%d PATCHes, %d with a body sendfile cannot send; want 4 and 0", check.patches, check.wrapped)
	}
	if last.Done != int64(len(data)) || last.Total != int64(len(data)) {
		t.Errorf("last progress %+v, want done = total = %d", last, len(data))
	}
}
