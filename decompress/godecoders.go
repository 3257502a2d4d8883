package decompress

import (
	"compress/bzip2"
	"io"
	"runtime"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
	"github.com/ulikunitz/xz"
)

// goDecoder is a Go library's decoder, made on the first Read so that
// NewReader reads nothing and every error comes from Read.
type goDecoder struct {
	kind string
	name string
	src  *source
	open func(io.Reader) (io.Reader, func(), error)
	r    io.Reader
	stop func()
}

func (d *goDecoder) Read(p []byte) (int, error) {
	if d.r == nil {
		r, stop, err := d.open(d.src)
		if err == io.EOF {
			// Not even a header: an empty or cut-off file.
			err = io.ErrUnexpectedEOF
		}
		if err != nil {
			return 0, goError(d.kind, d.src, err)
		}
		d.r, d.stop = r, stop
	}
	n, err := d.r.Read(p)
	if err == io.EOF && d.src.n == 0 {
		// An empty file is no stream (zstd's decoder takes it for one).
		err = io.ErrUnexpectedEOF
	}
	return n, goError(d.kind, d.src, err)
}

func (d *goDecoder) close() {
	if d.stop != nil {
		d.stop()
		d.stop = nil
	}
}

func (d *goDecoder) tool() string { return d.name }

func newGoXZ(src *source) *goDecoder {
	return &goDecoder{
		kind: "xz", src: src,
		name: "github.com/ulikunitz/xz" + moduleVersion("github.com/ulikunitz/xz") + " (pure Go; the xz tool was not used)",
		open: func(r io.Reader) (io.Reader, func(), error) {
			d, err := xz.NewReader(r)
			return d, nil, err
		},
	}
}

func newGzip(src *source) *goDecoder {
	return &goDecoder{
		kind: "gzip", src: src,
		name: "github.com/klauspost/compress/gzip" + moduleVersion("github.com/klauspost/compress"),
		open: func(r io.Reader) (io.Reader, func(), error) {
			d, err := gzip.NewReader(r)
			if err != nil {
				return nil, nil, err
			}
			return d, func() { d.Close() }, nil
		},
	}
}

func newZstd(src *source) *goDecoder {
	return &goDecoder{
		kind: "zstd", src: src,
		name: "github.com/klauspost/compress/zstd" + moduleVersion("github.com/klauspost/compress"),
		open: func(r io.Reader) (io.Reader, func(), error) {
			// The window is the memory a stream can make us hold: cap it
			// where the zstd tool does without --memory (128 MiB), so what
			// `zstd -d` takes we take, and a crafted header cannot ask more.
			d, err := zstd.NewReader(r, zstd.WithDecoderMaxWindow(128<<20))
			if err != nil {
				return nil, nil, err
			}
			return d, d.Close, nil
		},
	}
}

func newBzip2(src *source) *goDecoder {
	return &goDecoder{
		kind: "bzip2", src: src,
		name: "compress/bzip2 (Go " + runtime.Version() + ")",
		open: func(r io.Reader) (io.Reader, func(), error) {
			return bzip2.NewReader(r), nil, nil
		},
	}
}
