package nodeagent

import (
	"crypto/rand"
	"encoding/json"
	"errors"

	"io"
	"io/fs"
	"net/http"

	"golang.org/x/sys/unix"

	"github.com/quantix/cloudimages/catalog"
	"github.com/quantix/cloudimages/fault"
	"github.com/quantix/cloudimages/nodeagent/agentclient"
)

// handleLink publishes a second name for a published file: a hard link,
// made under a fresh temporary name and renamed over name in one step.
// A VM reading the file name named before keeps its inode; a VM opening
// name afterwards gets the new file; nobody ever sees name missing or
// half written.
func (s *Server) handleLink(w http.ResponseWriter, r *http.Request) {
	poolID, name := r.PathValue("pool_id"), r.PathValue("name")
	p, ok := s.pools[poolID]
	if !ok {
		writeError(w, fault.New(fault.PoolNotFound, "node %s serves no pool %q", s.cfg.NodeID, poolID))
		return
	}
	var req agentclient.LinkRequest
	if err := json.NewDecoder(io.LimitReader(r.Body, maxRequestBody)).Decode(&req); err != nil {
		writeError(w, fault.New(fault.InvalidRequest, "body: want {\"target\": \"FILE_NAME\"}: %v", err))
		return
	}
	for what, n := range map[string]string{"link name": name, "target": req.Target} {
		if err := catalog.ValidName(n); err != nil {
			writeError(w, fault.New(fault.InvalidRequest, "%s: %v", what, err))
			return
		}
	}
	if name == req.Target {
		writeError(w, fault.New(fault.InvalidRequest, "a link cannot name itself (%s)", name))
		return
	}
	if err := s.link(p, name, req.Target); err != nil {
		writeError(w, err)
		return
	}
	s.log.Info("link published", "pool_id", poolID, "name", name, "target", req.Target)
	writeJSON(w, http.StatusOK, agentclient.Link{PoolID: poolID, Name: name, Path: p.path(name), Target: req.Target})
}

// link makes name a hard link to target inside the pool's root. Only a
// regular published file is a target (never a symlink, a directory or
// data in flight), and name may replace only a regular file: the link it
// was before.
func (s *Server) link(p *pool, name, target string) error {
	fi, err := p.root.Lstat(target)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return fault.New(fault.NotFound, "no file %s in pool %s to link to", target, p.id)
	case err != nil:
		return fault.New(fault.Internal, "pool %s: %v", p.id, err)
	case !fi.Mode().IsRegular():
		return fault.New(fault.InvalidRequest, "%s in pool %s is not a regular file", target, p.id)
	}
	if fi, err := p.root.Lstat(name); err == nil && !fi.Mode().IsRegular() {
		return fault.New(fault.Conflict, "%s in pool %s is not a regular file: it is left alone; remove it to publish the link", name, p.id)
	}
	images, err := p.root.Open(".")
	if err != nil {
		return fault.New(fault.Internal, "pool %s: %v", p.id, err)
	}
	defer images.Close()
	work, err := p.root.Open(workDir)
	if err != nil {
		return fault.New(fault.Internal, "pool %s: %v", p.id, err)
	}
	defer work.Close()
	ifd, wfd := int(images.Fd()), int(work.Fd())
	tmp := "." + name + "." + rand.Text() + ".link"
	// Linkat without AT_SYMLINK_FOLLOW never follows a symlink, and both
	// names are single path elements under directory descriptors opened
	// through the root: nothing outside the pool is touched.
	if err := unix.Linkat(ifd, target, wfd, tmp, 0); err != nil {
		return fault.New(fault.Internal, "link %s in pool %s: %v", target, p.id, err)
	}
	if err := unix.Renameat(wfd, tmp, ifd, name); err != nil {
		_ = unix.Unlinkat(wfd, tmp, 0)
		return fault.New(fault.Internal, "publish %s in pool %s: %v", name, p.id, err)
	}
	if err := p.syncDir(); err != nil {
		s.log.Warn("sync images folder", "pool_id", p.id, "err", err)
	}
	return nil
}
