package nodeagent

import (
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/quantix/cloudimages/nodeagent/agentclient"
)

// workDir holds, inside a pool's cloud-images folder, what is not a
// published image: {id}~{node}.part (data in flight, one file per node, so
// a node that was frozen and wakes up after a failover writes only into
// its own) and {id}.json (the job's record, naming the node that owns the
// job). Its leading dot keeps it out of any valid file name; '~' is in no
// valid name, so partial names never collide.
const workDir = ".downloads"

// pool is one storage pool. Every file operation goes through root, an
// os.Root on {dir}/cloud-images: whatever a name says, and whatever
// symlinks sit in the pool, nothing is opened, renamed or removed outside it.
type pool struct {
	id   string
	dir  string
	root *os.Root
}

func openPool(p PoolDir) (*pool, error) {
	fi, err := os.Stat(p.Dir)
	if err != nil {
		return nil, fmt.Errorf("pool %s: directory %s: %w (create it, or mount the storage there)", p.ID, p.Dir, err)
	}
	if !fi.IsDir() {
		return nil, fmt.Errorf("pool %s: %s is not a directory", p.ID, p.Dir)
	}
	top, err := os.OpenRoot(p.Dir)
	if err != nil {
		return nil, fmt.Errorf("pool %s: %w", p.ID, err)
	}
	defer top.Close()
	if err := top.Mkdir(agentclient.ImagesDir, 0o755); err != nil && !errors.Is(err, fs.ErrExist) {
		return nil, fmt.Errorf("pool %s: create %s: %w", p.ID, filepath.Join(p.Dir, agentclient.ImagesDir), err)
	}
	root, err := top.OpenRoot(agentclient.ImagesDir)
	if err != nil {
		return nil, fmt.Errorf("pool %s: open %s: %w (is it a symlink out of the pool?)", p.ID, filepath.Join(p.Dir, agentclient.ImagesDir), err)
	}
	if err := root.Mkdir(workDir, 0o755); err != nil && !errors.Is(err, fs.ErrExist) {
		root.Close()
		return nil, fmt.Errorf("pool %s: create %s: %w", p.ID, filepath.Join(p.Dir, agentclient.ImagesDir, workDir), err)
	}
	if fi, err := root.Lstat(workDir); err != nil || !fi.IsDir() {
		root.Close()
		return nil, fmt.Errorf("pool %s: %s must be a directory", p.ID, filepath.Join(p.Dir, agentclient.ImagesDir, workDir))
	}
	return &pool{id: p.ID, dir: p.Dir, root: root}, nil
}

// path is where a file is published, as reported to callers.
func (p *pool) path(fileName string) string {
	return filepath.Join(p.dir, agentclient.ImagesDir, fileName)
}

func partName(id, node string) string { return workDir + "/" + partBase(id, node) }
func partBase(id, node string) string { return id + "~" + node + ".part" }
func recordName(id string) string     { return workDir + "/" + id + ".json" }

// space returns the pool's free (for this unprivileged-or-not process) and
// total bytes.
func (p *pool) space() (free, total uint64, err error) {
	var st syscall.Statfs_t
	if err := syscall.Statfs(p.dir, &st); err != nil {
		return 0, 0, err
	}
	return st.Bavail * uint64(st.Bsize), st.Blocks * uint64(st.Bsize), nil
}

// room returns the bytes that may still be written to the pool while it
// keeps its reserve free; negative when it is already below.
func (p *pool) room(r reserve) (int64, error) {
	free, total, err := p.space()
	if err != nil {
		return 0, err
	}
	return int64(free) - int64(r.of(total)), nil
}

// errFenced is returned when another node has taken a job over: the
// record names it, and this node must neither record nor publish anything
// of the job any more.
var errFenced = errors.New("another node took this download over")

// owner returns the node the record of a job names ("" without one).
func (p *pool) owner(id string) (string, error) {
	r, err := p.loadRecord(id)
	if errors.Is(err, fs.ErrNotExist) {
		return "", nil
	}
	if err != nil {
		return "", err
	}
	return r.NodeID, nil
}

// saveRecord writes a job's record atomically: a kill at any moment leaves
// the old record or the new one, never half of one. The temporary file
// gets a fresh random name and O_EXCL, so nothing planted in the pool
// (a symlink to a published image) can be opened and overwritten instead.
func (p *pool) saveRecord(r *record) error {
	data, err := json.Marshal(r)
	if err != nil {
		return err
	}
	tmp := workDir + "/." + r.Request.ID + "." + rand.Text() + ".tmp"
	f, err := p.root.OpenFile(tmp, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		p.root.Remove(tmp)
		return err
	}
	if err := f.Close(); err != nil {
		p.root.Remove(tmp)
		return err
	}
	if err := p.root.Rename(tmp, recordName(r.Request.ID)); err != nil {
		p.root.Remove(tmp)
		return err
	}
	return nil
}

func (p *pool) loadRecord(id string) (*record, error) {
	f, err := p.root.Open(recordName(id))
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var r record
	if err := json.NewDecoder(f).Decode(&r); err != nil {
		return nil, fmt.Errorf("record %s: %w", recordName(id), err)
	}
	if r.Request.ID != id {
		return nil, fmt.Errorf("record %s is for download %q", recordName(id), r.Request.ID)
	}
	return &r, nil
}

// recordIDs lists the ids of the records in the pool.
func (p *pool) recordIDs() ([]string, error) {
	d, err := p.root.Open(workDir)
	if err != nil {
		return nil, err
	}
	defer d.Close()
	names, err := d.Readdirnames(-1)
	if err != nil {
		return nil, err
	}
	var ids []string
	for _, n := range names {
		if id, ok := strings.CutSuffix(n, ".json"); ok && !strings.HasPrefix(n, ".") {
			ids = append(ids, id)
		}
	}
	return ids, nil
}

// removeJobFiles removes a job's partial data (node's), its decompression
// and conversion work files and its record; missing is fine.
func (p *pool) removeJobFiles(id, node string, keepRecord bool) error {
	err := p.root.Remove(partName(id, node))
	if errors.Is(err, fs.ErrNotExist) {
		err = nil
	}
	err = errors.Join(err, p.removeUnpacked(id, node), p.removeConverted(id, node))
	if !keepRecord {
		if e := p.root.Remove(recordName(id)); e != nil && !errors.Is(e, fs.ErrNotExist) {
			err = errors.Join(err, e)
		}
	}
	return err
}

// errTaken is returned by publish when the pool already holds a file (or
// a link, or anything) under the name: it is never replaced.
var errTaken = errors.New("the name is taken")

// publish moves a download's verified work file (from, a name in workDir:
// the partial file, or the decompressed one) to its published name
// in one step that never replaces what is there: renameat2 with
// RENAME_NOREPLACE, or, where the file system refuses that flag (NFS
// answers EINVAL) or linkOnly is set, link and then unlink. Both work on
// directory descriptors opened through the pool's root and on single
// names, so nothing outside the pool is touched.
func (p *pool) publish(from, fileName string, linkOnly bool) error {
	work, err := p.root.Open(workDir)
	if err != nil {
		return err
	}
	defer work.Close()
	images, err := p.root.Open(".")
	if err != nil {
		return err
	}
	defer images.Close()
	wfd, ifd := int(work.Fd()), int(images.Fd())
	if !linkOnly {
		err = unix.Renameat2(wfd, from, ifd, fileName, unix.RENAME_NOREPLACE)
		switch {
		case err == nil:
			return nil
		case errors.Is(err, unix.EEXIST):
			return errTaken
		case !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOSYS) && !errors.Is(err, unix.EOPNOTSUPP):
			return err
		}
	}
	if err := unix.Linkat(wfd, from, ifd, fileName, 0); err != nil {
		if errors.Is(err, unix.EEXIST) {
			return errTaken
		}
		return err
	}
	// Published; a partial name left behind is only a second link to the
	// same bytes, removed with the job's files later.
	_ = unix.Unlinkat(wfd, from, 0)
	return nil
}

// syncDir makes a rename in the images folder durable.
func (p *pool) syncDir() error {
	d, err := p.root.Open(".")
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
