package nodeagent

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"time"

	"github.com/quantix/cloudimages/checksum"
	"github.com/quantix/cloudimages/diskimage"
	"github.com/quantix/cloudimages/fault"
	"github.com/quantix/cloudimages/nodeagent/agentclient"
)

// convertName is the work file a conversion writes ({id}~{node}.convert),
// next to the partial data, which stays until the converted file is
// published.
func convertName(id, node string) string { return workDir + "/" + convertBase(id, node) }
func convertBase(id, node string) string { return id + "~" + node + ".convert" }

// removeConverted removes a job's conversion work file; missing is fine.
func (p *pool) removeConverted(id, node string) error {
	if err := p.root.Remove(convertName(id, node)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	return nil
}

// findQemuImg returns the qemu-img the agent converts with ("" when there
// is none): cfg.QemuImg, or qemu-img on PATH.
func findQemuImg(name string) (string, error) {
	if name == "" {
		name = "qemu-img"
	}
	return exec.LookPath(name)
}

// checkConvertTo says what is wrong with a request's convert_to.
func checkConvertTo(to string) error {
	switch to {
	case "", diskimage.Raw, diskimage.QCOW2:
		return nil
	}
	return fault.New(fault.InvalidRequest, "convert_to %q: want \"raw\" or \"qcow2\" (the pool's image format), or nothing to keep the image's own", to)
}

// noConverter is the refusal of a request to convert on an agent without
// qemu-img. It is retryable: another node that has it (health names
// "convert") can take the download.
func (s *Server) noConverter(to string) error {
	return fault.Retryable(fault.ConversionFailed, "node %s cannot convert images to %s: qemu-img is missing (install Debian's qemu-utils on the node and restart the agent), or send this download to a node whose health lists %q", s.cfg.NodeID, to, agentclient.FeatureConvert)
}

// qemuFormat is qemu-img's name of an inspected format.
func qemuFormat(format string) string {
	switch format {
	case diskimage.VHD:
		return "vpc"
	case diskimage.ISO:
		return "raw"
	}
	return format
}

// convert turns the verified, inspected image in (work file from, whose
// inspection found info) into req.ConvertTo with qemu-img, checks and
// inspects the result, and returns it synced to disk, with its size and
// sha256. Nothing unverified or unsafe reaches it: publish calls it only
// after the checksum matched and inspection passed. On error the work
// file is removed here; the caller removes the job's other files.
//
// qemu-img takes paths, and a path could be swapped for a symlink out of
// the pool between two steps. So it is given no path of the pool at all:
// the work folder, opened through the pool's os.Root, and the input file
// are handed to it as open descriptors (fds 3 and 4), and it reads
// /proc/self/fd/4 and writes /proc/self/fd/3/{name}. The output name is
// created first by this agent with O_EXCL (nothing planted there can be
// followed); qemu-img then truncates and writes that same regular file.
// Progress is qemu-img's own (-p, parsed from its stdout): the output's
// size says little, as a raw target is its full size at once. While the
// state is "converting" the download's bytes_done and bytes_total count
// the image's virtual size converted (see job.converted).
func (t *transfer) convert(ctx context.Context, in *os.File, inSize int64, info diskimage.Info) (unpacked, error) {
	j := t.j
	p, id, node, to := j.pool, t.req.ID, j.node(), t.req.ConvertTo
	if t.s.qemuImg == "" {
		return unpacked{}, t.s.noConverter(to)
	}
	// Room first: a sparse qcow2 of a few hundred MiB can be a raw file
	// of its whole virtual size. A qcow2 written from a raw file holds at
	// most that file's bytes and its tables; from another format, at most
	// the virtual size.
	need := info.VirtualSize
	if to == diskimage.QCOW2 && info.Format == diskimage.Raw {
		need = inSize + inSize/256
	}
	if to == diskimage.Raw && info.VirtualSize > t.s.cfg.MaxImageSize {
		return unpacked{}, fault.New(fault.TooLarge, "%s converted to raw is %d bytes (its virtual size), past the node's --max-image-size of %d bytes: raise it on the agent if this image is meant, or use a qcow2 pool", t.req.FileName, info.VirtualSize, t.s.cfg.MaxImageSize)
	}
	if room, err := p.room(t.s.minFree); err == nil && need > room {
		return unpacked{}, t.s.noRoom(p, room, need)
	}
	j.converted(0, info.VirtualSize)
	j.update(func(r *record) { r.State = agentclient.StateConverting })
	j.save()
	if err := p.removeConverted(id, node); err != nil {
		return unpacked{}, diskError(p, err)
	}
	out, err := p.root.OpenFile(convertName(id, node), os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return unpacked{}, diskError(p, err)
	}
	res, err := t.runConvert(ctx, out, in, info)
	if err != nil {
		out.Close()
		if e := p.removeConverted(id, node); e != nil {
			j.log.Warn("remove the conversion work file", "err", e)
		}
		return unpacked{}, err
	}
	return res, nil
}

func (t *transfer) runConvert(ctx context.Context, out, in *os.File, info diskimage.Info) (unpacked, error) {
	j := t.j
	p, to := j.pool, t.req.ConvertTo
	work, err := p.root.Open(workDir)
	if err != nil {
		return unpacked{}, diskError(p, err)
	}
	defer work.Close()
	target := "/proc/self/fd/3/" + convertBase(t.req.ID, j.node())
	began := time.Now()
	j.log.Info("converting the verified image", "from", info.Format, "to", to, "virtual_size", info.VirtualSize, "qemu_img", t.s.qemuImg)
	progress := &convertProgress{report: func(pct float64) {
		j.converted(int64(pct/100*float64(info.VirtualSize)), info.VirtualSize)
		if t.s.convertReport != nil {
			t.s.convertReport(pct)
		}
	}}
	if err := t.qemuImg(ctx, progress, []*os.File{work, in}, "convert", "-p", "-f", qemuFormat(info.Format), "-O", to, "/proc/self/fd/4", target); err != nil {
		return unpacked{}, err
	}
	j.log.Info("converted", "from", info.Format, "to", to, "took", time.Since(began))
	// Check what qemu-img wrote, as the field does: qemu-img check for
	// qcow2 (its tables are consistent), the exact size for raw.
	if to == diskimage.QCOW2 {
		if err := t.qemuImg(ctx, nil, []*os.File{work}, "check", "-q", "-f", "qcow2", target); err != nil {
			return unpacked{}, err
		}
	}
	fi, err := out.Stat()
	if err != nil {
		return unpacked{}, diskError(p, err)
	}
	size := fi.Size()
	if to == diskimage.Raw && size != info.VirtualSize {
		return unpacked{}, fault.New(fault.ConversionFailed, "qemu-img converted %s to a raw file of %d bytes, its virtual size is %d: the conversion is incomplete", t.req.FileName, size, info.VirtualSize)
	}
	if size > t.s.cfg.MaxImageSize {
		return unpacked{}, tooLarge(size, t.s.cfg.MaxImageSize)
	}
	req := t.req
	req.Format = to
	got, err := inspect(out, size, req)
	if err != nil {
		return unpacked{}, fault.New(fault.ConversionFailed, "qemu-img's %s output for %s does not pass inspection: %v", to, t.req.FileName, fault.From(err).Message)
	}
	if got.Format != to || got.VirtualSize != info.VirtualSize {
		return unpacked{}, fault.New(fault.ConversionFailed, "qemu-img's output for %s is a %s image of %d bytes, want %s of %d", t.req.FileName, got.Format, got.VirtualSize, to, info.VirtualSize)
	}
	// The published file's sha256 needs its bytes, which only qemu-img
	// has seen: reading the converted file once more is unavoidable.
	h := sha256.New()
	if _, err := io.Copy(h, io.NewSectionReader(out, 0, size)); err != nil {
		return unpacked{}, diskError(p, err)
	}
	if err := t.s.datasync(out); err != nil {
		return unpacked{}, diskError(p, err)
	}
	return unpacked{f: out, size: size, sum: checksum.Of("sha256", h)}, nil
}

// qemuImg runs qemu-img with files as its fds 3, 4…; ctx's end kills it.
// Its stdout goes to stdout when given (convert's progress), else with
// its stderr into the message of a failure. A failure is conversion_failed
// with the tail of what qemu-img said; not retryable: the same bytes
// convert the same way on any node. The pool filling up under it is
// disk_full instead, as for a download.
func (t *transfer) qemuImg(ctx context.Context, stdout io.Writer, files []*os.File, args ...string) error {
	cmd := exec.CommandContext(ctx, t.s.qemuImg, args...)
	cmd.ExtraFiles = files
	cmd.WaitDelay = 5 * time.Second // a child it left holding stderr does not hold the job
	// Its messages in English, whatever the node's locale: they are
	// matched below and read by whoever looks at the error.
	cmd.Env = append(os.Environ(), "LC_ALL=C")
	var stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stderr, &stderr
	if stdout != nil {
		cmd.Stdout = stdout
	}
	err := cmd.Run()
	if err == nil {
		return nil
	}
	if ctx.Err() != nil {
		return context.Cause(ctx)
	}
	msg := strings.TrimSpace(stderr.String())
	if len(msg) > 1000 {
		msg = "…" + msg[len(msg)-1000:]
	}
	if msg == "" {
		msg = "(no output)"
	}
	if outOfSpace(msg) {
		p := t.j.pool
		return fault.Retryable(fault.DiskFull, "pool %s filled up while qemu-img converted %s (%s): free space in %s or use another pool", p.id, t.req.FileName, msg, p.dir)
	}
	return fault.New(fault.ConversionFailed, "qemu-img %s of %s failed (%v): %s", args[0], t.req.FileName, err, msg)
}

// outOfSpace reports whether qemu-img failed for want of room: its words
// for ENOSPC and EDQUOT (the C library's strerror in the C locale, which
// Go's syscall spells in lower case).
func outOfSpace(msg string) bool {
	return strings.Contains(msg, "No space left on device") || strings.Contains(msg, "Disk quota exceeded")
}

// convertProgress reads qemu-img convert -p's stdout, lines such as
// "    (12.34/100%)" ended by a carriage return, and reports each
// percentage. Anything else qemu-img writes there is ignored (its errors
// go to stderr).
type convertProgress struct {
	report  func(percent float64)
	pending []byte // the start of a line not yet ended
}

func (p *convertProgress) Write(b []byte) (int, error) {
	p.pending = append(p.pending, b...)
	for {
		i := bytes.IndexAny(p.pending, "\r\n")
		if i < 0 {
			break
		}
		if pct, ok := parseProgress(p.pending[:i]); ok {
			p.report(pct)
		}
		p.pending = p.pending[i+1:]
	}
	if len(p.pending) > 256 {
		p.pending = p.pending[:0] // no progress line is this long
	}
	return len(b), nil
}

// parseProgress reads one of qemu-img's progress lines: "(12.34/100%)".
func parseProgress(line []byte) (float64, bool) {
	s := strings.TrimSpace(string(line))
	s, opened := strings.CutPrefix(s, "(")
	s, closed := strings.CutSuffix(s, "/100%)")
	pct, err := strconv.ParseFloat(s, 64)
	if !opened || !closed || err != nil || !(pct >= 0 && pct <= 100) { // NaN too
		return 0, false
	}
	return pct, true
}

// converterWarning is logged at start when qemu-img is missing.
func converterWarning(err error) string {
	return fmt.Sprintf("qemu-img not found (%v): images cannot be converted on this node, and pools with an image_format will not get its downloads; install Debian's qemu-utils, or point --qemu-img (CLOUDIMAGES_QEMU_IMG) at it, and restart the agent", err)
}
