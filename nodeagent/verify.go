package nodeagent

import (
	"bytes"
	"context"
	"encoding"
	"errors"
	"io"
	"io/fs"
	"os"
	"path"
	"strings"
	"time"

	"github.com/quantix/cloudimages/checksum"
	"github.com/quantix/cloudimages/diskimage"
	"github.com/quantix/cloudimages/fault"
	"github.com/quantix/cloudimages/nodeagent/agentclient"
)

// checkHead tells a disk image from what mirrors send when things go
// wrong: an HTML or XML error page, or anything but qcow2 where qcow2 is
// expected. Raw images can start with anything, so only pages are refused.
func (t *transfer) checkHead() error {
	if t.headChecked {
		return nil
	}
	t.headChecked = true
	if len(t.head) == 0 {
		return fault.New(fault.NotADiskImage, "mirror sent an empty file for %s", redact(t.url()))
	}
	start := bytes.ToLower(bytes.TrimLeft(t.head, " \t\r\n\xef\xbb\xbf"))
	for _, p := range []string{"<!doctype", "<html", "<?xml", "<head", "<body"} {
		if bytes.HasPrefix(start, []byte(p)) {
			return fault.New(fault.NotADiskImage, "mirror sent a web page instead of a disk image (it starts with %q): check the URL in a browser", string(t.head[:min(len(t.head), 40)]))
		}
	}
	if diskimage.DetectCompression(t.head) != diskimage.None {
		return nil // what it holds is inspected once decompressed
	}
	if t.qcow2 && !bytes.HasPrefix(t.head, []byte("QFI\xfb")) {
		if other := otherDiskMagic(t.head); other != "" {
			return fault.New(fault.FormatMismatch, "%s should be a qcow2 image but the mirror serves a %s image: check the URL and the declared format", t.req.FileName, other)
		}
		return fault.New(fault.NotADiskImage, "%s should be a qcow2 image but does not start with the qcow2 magic (first bytes %q): check the URL and the format", t.req.FileName, string(t.head[:min(len(t.head), 8)]))
	}
	return nil
}

// publish verifies the whole file and moves it, by one atomic rename that
// never replaces an existing file, to where images live. A compressed
// download (told by its magic bytes, not its name) is decompressed first
// and the decompressed file is inspected and published; the compressed
// partial file is removed only once that is done. When the request's
// convert_to names another format than inspection found, the inspected
// image is converted (see convert) and the converted file published
// instead: nothing unverified or unsafe is ever converted.
func (t *transfer) publish(ctx context.Context) error {
	j := t.j
	j.update(func(r *record) { r.State, r.BytesDone, r.BytesTotal = agentclient.StateVerifying, t.done, t.total })
	if err := t.checkHead(); err != nil {
		return err
	}
	if t.req.SizeBytes > 0 && t.done != t.req.SizeBytes {
		return fault.New(fault.NotADiskImage, "mirror sent %d bytes, the image is %d bytes (size_bytes): the file is truncated", t.done, t.req.SizeBytes)
	}
	got := checksum.Of(t.algo, t.h)
	if want := t.req.Checksum; want != "" && !strings.EqualFold(got, want) {
		return fault.New(fault.ChecksumMismatch, "the downloaded file's checksum is %s, the request expects %s: the mirror serves other bytes than the checksum describes (a changed image, a wrong checksum, or a corrupting proxy)", got, want)
	}
	kind := diskimage.DetectCompression(t.head)
	// What is published: the partial file itself, or what it decompresses to.
	out := unpacked{f: t.f, size: t.done, sum: t.fileSum(got)}
	from := partBase(t.req.ID, j.node())
	if kind != diskimage.None {
		// The whole compressed file is on disk and verified: record that,
		// so a restart during decompression decompresses it again rather
		// than downloading it again.
		if err := t.saveCheckpointNow(); err != nil {
			return err
		}
		var err error
		if out, err = t.unpack(ctx, kind); err != nil {
			return err
		}
		from = unpackBase(t.req.ID, j.node())
	}
	info, err := inspect(out.f, out.size, t.req)
	if err != nil {
		return err
	}
	var inputs []string // work files to remove once the result is published
	if to := t.req.ConvertTo; to != "" && to != info.Format {
		if kind == diskimage.None {
			if err := t.saveCheckpointNow(); err != nil {
				return err // a restart converts again rather than downloading again
			}
		}
		conv, err := t.convert(ctx, out.f, out.size, info)
		if err != nil {
			return err
		}
		t.conv = conv.f
		inputs = append(inputs, partName(t.req.ID, j.node()))
		if kind != diskimage.None {
			inputs = append(inputs, unpackName(t.req.ID, j.node()))
		}
		out, from = conv, convertBase(t.req.ID, j.node())
		info.Format = to
	} else if kind != diskimage.None {
		inputs = append(inputs, partName(t.req.ID, j.node()))
	}
	syncStart := time.Now()
	if err := out.f.Sync(); err != nil {
		return diskError(j.pool, err)
	}
	j.log.Debug("data synced to disk", "took", time.Since(syncStart))
	dropCached(out.f, 0)
	if err := t.closeFiles(); err != nil {
		return err
	}
	if owner, err := j.pool.owner(t.req.ID); err == nil && owner != "" && owner != j.node() {
		return fenced(j)
	}
	if err := j.pool.publish(from, t.req.FileName, t.s.linkPublish); err != nil {
		if errors.Is(err, errTaken) {
			return t.s.taken(j.pool, t.req)
		}
		return fault.New(fault.Internal, "publish %s: %v", j.pool.path(t.req.FileName), err)
	}
	if err := j.pool.syncDir(); err != nil {
		j.log.Warn("sync images folder", "err", err)
	}
	for _, name := range inputs {
		if err := j.pool.root.Remove(name); err != nil && !errors.Is(err, fs.ErrNotExist) {
			j.log.Warn("remove the work file of a published image", "file", name, "err", err)
		}
	}
	now := time.Now().UTC()
	j.update(func(r *record) {
		r.State, r.Checksum, r.FinishedAt, r.HashState, r.Error = agentclient.StateCompleted, got, &now, nil, nil
		r.Format, r.VirtualSize = info.Format, info.VirtualSize
		r.Compression, r.FileChecksum, r.FileSize = kind, out.sum, out.size
	})
	j.save()
	return nil
}

// saveCheckpointNow records the exact state of the partial data.
func (t *transfer) saveCheckpointNow() error {
	state, err := t.h.(encoding.BinaryMarshaler).MarshalBinary()
	if err != nil {
		return fault.New(fault.Internal, "save the hash state: %v", err)
	}
	return t.saveCheckpoint(state)
}

// closeFiles closes the partial file and the decompressed and converted
// ones, if any.
func (t *transfer) closeFiles() error {
	var err error
	for _, f := range []**os.File{&t.f, &t.out, &t.conv} {
		if *f != nil {
			err = errors.Join(err, (*f).Close())
			*f = nil
		}
	}
	if err != nil {
		return diskError(t.j.pool, err)
	}
	return nil
}

// otherDiskMagic names the disk format whose magic starts head, for the
// formats that carry one at offset 0 ("" for none of them).
func otherDiskMagic(head []byte) string {
	for _, m := range []struct{ magic, format string }{
		{"KDMV", diskimage.VMDK}, {"# Disk DescriptorFile", diskimage.VMDK},
		{"vhdxfile", diskimage.VHDX}, {"conectix", diskimage.VHD}, {"<<< ", diskimage.VDI},
	} {
		if bytes.HasPrefix(head, []byte(m.magic)) {
			return m.format
		}
	}
	return ""
}

// inspect reads the verified file's headers (never its data) and refuses
// what must not reach a hypervisor: an image that would read another file
// or outside itself (unsafe_image), one in another format than its source
// declared (format_mismatch), or bytes that are no disk image at all. It
// runs after the checksum matched, so what it judges are the vendor's bytes.
func inspect(f io.ReaderAt, size int64, req agentclient.DownloadRequest) (diskimage.Info, error) {
	declared := req.Format
	if declared == "" && req.ConvertTo == "" {
		// A file converted for the pool is named for its new format: its
		// name says nothing of what the mirror serves.
		declared = formatByName(req.FileName)
	}
	info, err := diskimage.InspectDeclared(f, size, declared)
	if declared == "" && errors.Is(err, diskimage.ErrNotDiskImage) {
		// Nothing declared and no magic: raw bytes, unless they are a kind
		// people fetch by mistake (an archive, a page, a compressed file).
		info, err = diskimage.InspectDeclared(f, size, diskimage.Raw)
	}
	switch {
	case err == nil:
		return info, nil
	case errors.Is(err, diskimage.ErrUnsafe):
		return info, fault.New(fault.UnsafeImage, "%s was refused: %v. Use the vendor's self-contained image", req.FileName, err)
	case errors.Is(err, diskimage.ErrFormatMismatch):
		return info, fault.New(fault.FormatMismatch, "%s: %v. Check the URL and the declared format", req.FileName, err)
	case errors.Is(err, diskimage.ErrNotDiskImage):
		return info, fault.New(fault.NotADiskImage, "%s: %v", req.FileName, err)
	default:
		return info, fault.New(fault.Internal, "inspect %s: %v", req.FileName, err)
	}
}

// formatByName is the format a file name declares by its extension, or ""
// (".img" and other names say nothing).
func formatByName(name string) string {
	ext := strings.TrimPrefix(strings.ToLower(path.Ext(name)), ".")
	for _, f := range diskimage.Formats {
		if ext == f {
			return f
		}
	}
	return ""
}

func expectsQCOW2(req agentclient.DownloadRequest) bool {
	if req.Format != "" {
		return strings.EqualFold(req.Format, "qcow2")
	}
	if req.ConvertTo != "" {
		return false // the name is the converted file's (see inspect)
	}
	return strings.HasSuffix(strings.ToLower(req.FileName), ".qcow2")
}
