package nodeagent

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"
	"strings"
	"syscall"

	"github.com/quantix/cloudimages/catalog"
	"github.com/quantix/cloudimages/fault"
	"github.com/quantix/cloudimages/nodeagent/agentclient"
)

// handleServeFile serves a published image to a peer agent (GET and HEAD
// /v1/pools/{pool_id}/files/{file_name}), with Range and If-Range, so that
// a distribution copies an image inside the cluster instead of fetching it
// from the mirror again. The caller is let in by auth: a token the worker
// minted from this node's credential for this one path
// (nodeauth.MintFileRead). Only a published file is served: a regular
// file directly in the pool's cloud-images folder, under a valid name;
// never data in flight (.downloads/, whose names are not valid file
// names), a directory, or a symlink.
func (s *Server) handleServeFile(w http.ResponseWriter, r *http.Request) {
	poolID, name := r.PathValue("pool_id"), r.PathValue("file_name")
	p, ok := s.pools[poolID]
	if !ok {
		writeError(w, fault.New(fault.NotFound, "node %s serves no pool %q", s.cfg.NodeID, poolID))
		return
	}
	notFound := fault.New(fault.NotFound, "no published file %q in pool %s on node %s", name, poolID, s.cfg.NodeID)
	if catalog.ValidName(name) != nil {
		writeError(w, notFound)
		return
	}
	f, fi, err := p.openPublished(name)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		writeError(w, notFound)
		return
	case err != nil:
		writeError(w, fault.New(fault.Internal, "pool %s: %v", poolID, err))
		return
	}
	defer f.Close()
	w.Header().Set("ETag", s.fileETag(p, name, fi))
	w.Header().Set("Content-Type", "application/octet-stream")
	s.metrics.serving.Inc()
	defer s.metrics.serving.Dec()
	cw := &countingWriter{ResponseWriter: w}
	http.ServeContent(cw, r, name, fi.ModTime(), f)
	if cw.status == http.StatusOK || cw.status == http.StatusPartialContent {
		s.metrics.served.Add(float64(cw.n)) // file bytes, not a 416's message
	}
	if r.Method == http.MethodGet {
		s.log.Debug("published file served to a peer", "pool_id", poolID, "file_name", name, "bytes", cw.n, "range", r.Header.Get("Range"))
	}
}

// openPublished opens a published file for reading: it must be a regular
// file (not a symlink, even one inside the pool) when looked at and still
// the same file once opened, so a name swapped for a link between the two
// steps is refused rather than followed.
func (p *pool) openPublished(name string) (*os.File, os.FileInfo, error) {
	fi, err := p.root.Lstat(name)
	if err != nil {
		return nil, nil, err
	}
	if !fi.Mode().IsRegular() {
		return nil, nil, fs.ErrNotExist
	}
	f, err := p.root.OpenFile(name, os.O_RDONLY|syscall.O_NOFOLLOW, 0)
	if err != nil {
		if errors.Is(err, syscall.ELOOP) {
			return nil, nil, fs.ErrNotExist
		}
		return nil, nil, err
	}
	opened, err := f.Stat()
	if err != nil || !os.SameFile(fi, opened) {
		f.Close()
		return nil, nil, fs.ErrNotExist
	}
	return f, opened, nil
}

// fileETag is a strong validator of a published file. When this agent
// published the file and knows its checksum, the ETag is that checksum:
// every node holding the same image gives the same one, so a copy resumed
// from another peer keeps its partial data. Otherwise it names this very
// file (inode, size, modification time), which a published file never
// changes, since it is never rewritten in place.
func (s *Server) fileETag(p *pool, name string, fi os.FileInfo) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, j := range s.jobs {
		r := j.record()
		if r.Request.PoolID == p.id && r.Request.FileName == name && r.State == agentclient.StateCompleted &&
			r.FileChecksum != "" && r.publishedSize() == fi.Size() {
			return `"` + strings.Replace(r.FileChecksum, ":", "-", 1) + `"`
		}
	}
	var ino uint64
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		ino = st.Ino
	}
	return fmt.Sprintf(`"f-%x-%x-%x"`, ino, fi.Size(), fi.ModTime().UnixNano())
}

// countingWriter counts the body bytes written, and passes io.ReaderFrom
// on so the file still goes out by sendfile.
type countingWriter struct {
	http.ResponseWriter
	n      int64
	status int
}

func (c *countingWriter) WriteHeader(status int) {
	if c.status == 0 {
		c.status = status
	}
	c.ResponseWriter.WriteHeader(status)
}

func (c *countingWriter) Write(b []byte) (int, error) {
	if c.status == 0 {
		c.status = http.StatusOK
	}
	n, err := c.ResponseWriter.Write(b)
	c.n += int64(n)
	return n, err
}

func (c *countingWriter) ReadFrom(r io.Reader) (int64, error) {
	if c.status == 0 {
		c.status = http.StatusOK
	}
	n, err := io.Copy(c.ResponseWriter, r) // the response's own ReadFrom
	c.n += n
	return n, err
}
