// Package decompress turns a compressed stream (xz, gzip, bzip2, zstd) into
// the bytes it holds, as a stream, for the node agent to publish vendors'
// compressed images. xz runs in the `xz` tool of Debian's xz-utils when it is
// installed, because the pure-Go decoders are several times slower; the
// others, and xz without the tool, decode in Go. Every error says what to do,
// and callers branch on ErrCorrupt, ErrTruncated and ErrTooLarge.
package decompress

import (
	"context"
	"errors"
	"fmt"
	"io"
	"runtime/debug"

	"github.com/quantix/cloudimages/diskimage"
)

// ErrCorrupt is wrapped by every error that comes from the compressed bytes
// themselves: a damaged block, a wrong check, a stream that ends early.
var ErrCorrupt = errors.New("the compressed file is damaged or truncated: download it again; " +
	"if the vendor's checksum of the compressed bytes matched, the vendor published a damaged file")

// ErrTruncated is the ErrCorrupt of a stream that ends before its end
// marker (an interrupted download, most often). errors.Is(err, ErrCorrupt)
// holds for it too.
var ErrTruncated = fmt.Errorf("the compressed stream ends early: %w", ErrCorrupt)

// ErrTooLarge is wrapped by the error of a Reader whose output passed its
// limit: a decompression bomb, or an image larger than the space allowed for it.
var ErrTooLarge = errors.New("the decompressed image is larger than allowed: " +
	"free space in the pool or raise the size limit if the image is genuine; a small file that expands this far is a decompression bomb")

// Option changes how NewReader decompresses.
type Option func(*config)

type config struct {
	limit  int64
	pureGo bool
}

// Limit stops the output at max bytes: a Read past it fails with an error
// wrapping ErrTooLarge, and the decoder (and the xz process) stops there.
// max <= 0 means no limit.
func Limit(max int64) Option { return func(c *config) { c.limit = max } }

// PureGo decodes xz in Go even when the xz tool is installed (for tests and
// for benchmarks that compare the two).
func PureGo() Option { return func(c *config) { c.pureGo = true } }

// Reader is the decompressed stream. Read and Close must not be called at
// the same time. Close always releases the decoder: it kills and reaps the
// xz process when one runs.
type Reader struct {
	ctx   context.Context
	kind  string
	limit int64
	n     int64 // bytes returned so far
	err   error // sticky: once set, every Read returns it
	dec   decoder
}

// decoder is one way of decompressing: the xz tool or a Go library.
type decoder interface {
	io.Reader
	// close stops the decoder and frees what it holds; it returns no error
	// the caller could act on, so it returns none.
	close()
	// tool says which decoder runs, for logs.
	tool() string
}

// NewReader decompresses compressed, which holds a stream of kind ("xz",
// "gzip", "bzip2", "zstd", or "none" for bytes passed through; see
// diskimage.DetectCompression). Nothing is read before the first Read.
//
// The Reader stops when ctx ends: the xz process is killed and the next
// Read returns ctx's error. Close (and a Read that returns an error) waits
// for the goroutine that feeds compressed to xz, which stops when its
// current Read of compressed returns: give a compressed reader that ctx's
// end unblocks, as the body of an HTTP request made with ctx is.
func NewReader(ctx context.Context, kind string, compressed io.Reader, opts ...Option) (*Reader, error) {
	var c config
	for _, o := range opts {
		o(&c)
	}
	r := &Reader{ctx: ctx, kind: kind, limit: c.limit}
	src := &source{r: compressed}
	switch kind {
	case diskimage.XZ:
		if path, ok := xzTool(); ok && !c.pureGo {
			d, err := startXZ(ctx, path, compressed)
			if err != nil {
				return nil, err
			}
			r.dec = d
		} else {
			r.dec = newGoXZ(src)
		}
	case diskimage.Gzip:
		r.dec = newGzip(src)
	case diskimage.Zstd:
		r.dec = newZstd(src)
	case diskimage.Bzip2:
		r.dec = newBzip2(src)
	case diskimage.None:
		r.dec = passthrough{compressed}
	default:
		return nil, fmt.Errorf("decompress: unknown compression %q: the supported kinds are xz, gzip, bzip2, zstd and none", kind)
	}
	return r, nil
}

// Tool says which decoder runs, for a log line: "xz (XZ Utils) 5.4.1",
// "github.com/ulikunitz/xz v0.5.17 (pure Go)", "github.com/klauspost/compress/zstd v1.20.1"…
func (r *Reader) Tool() string { return r.dec.tool() }

// Read reads decompressed bytes.
func (r *Reader) Read(p []byte) (int, error) {
	if r.err != nil {
		return 0, r.err
	}
	if err := r.ctx.Err(); err != nil {
		return 0, r.fail(fmt.Errorf("decompress %s: %w", r.kind, err))
	}
	if r.limit > 0 && int64(len(p)) > r.limit-r.n+1 {
		// One byte past the limit is enough to know it was passed.
		p = p[:r.limit-r.n+1]
	}
	n, err := r.dec.Read(p)
	r.n += int64(n)
	if r.limit > 0 && r.n > r.limit {
		n -= int(r.n - r.limit)
		r.n = r.limit
		return n, r.fail(fmt.Errorf("decompress %s: %w (more than %d bytes)", r.kind, ErrTooLarge, r.limit))
	}
	if err != nil {
		if err != io.EOF && r.ctx.Err() != nil {
			// A decoder stopped by ctx (the xz process killed) says so
			// in its own words; the cause is ctx.
			err = fmt.Errorf("decompress %s: %w", r.kind, r.ctx.Err())
		}
		r.fail(err)
	}
	return n, err
}

// fail makes err sticky and stops the decoder.
func (r *Reader) fail(err error) error {
	r.err = err
	r.dec.close()
	return err
}

// Close stops the decoder. Closing before the end is not an error.
func (r *Reader) Close() error {
	r.dec.close()
	if r.err == nil {
		r.err = errors.New("decompress: read after Close")
	}
	return nil
}

// source wraps the compressed reader so that an error of the reader itself
// (a dropped connection) is told apart from the decoder's verdict on the bytes.
type source struct {
	r   io.Reader
	n   int64 // bytes read
	err error // the reader's first error other than io.EOF
}

func (s *source) Read(p []byte) (int, error) {
	n, err := s.r.Read(p)
	s.n += int64(n)
	if err != nil && err != io.EOF && s.err == nil {
		s.err = err
	}
	return n, err
}

// goError turns a Go decoder's error into the package's: the source's own
// error as it is, an early end as ErrTruncated, anything else as ErrCorrupt.
func goError(kind string, src *source, err error) error {
	switch {
	case err == nil || err == io.EOF:
		return err
	case src.err != nil:
		return fmt.Errorf("decompress %s: reading the compressed stream: %w", kind, src.err)
	case errors.Is(err, io.ErrUnexpectedEOF):
		return fmt.Errorf("decompress %s: %w", kind, ErrTruncated)
	default:
		return fmt.Errorf("decompress %s: %w (%v)", kind, ErrCorrupt, err)
	}
}

// passthrough is kind "none".
type passthrough struct{ r io.Reader }

func (p passthrough) Read(b []byte) (int, error) { return p.r.Read(b) }
func (passthrough) close()                       {}
func (passthrough) tool() string                 { return "none (passed through)" }

// moduleVersion is the version of module path built into this binary, for
// Tool; "" when the binary carries no build information.
func moduleVersion(path string) string {
	info, ok := debug.ReadBuildInfo()
	if !ok {
		return ""
	}
	for _, m := range info.Deps {
		if m.Path == path {
			return " " + m.Version
		}
	}
	return ""
}
