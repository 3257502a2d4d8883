package decompress

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"sync"
)

// xzTool finds the xz tool on PATH.
func xzTool() (string, bool) {
	path, err := exec.LookPath("xz")
	return path, err == nil
}

// xzVersions caches `xz --version` by path: it is asked once per binary.
var xzVersions sync.Map

func xzVersion(path string) string {
	if v, ok := xzVersions.Load(path); ok {
		return v.(string)
	}
	v := "xz"
	if out, err := exec.Command(path, "--version").Output(); err == nil {
		if line, _, _ := strings.Cut(string(out), "\n"); line != "" {
			v = line // "xz (XZ Utils) 5.4.1"
		}
	}
	xzVersions.Store(path, v)
	return v
}

// xzProcess is `xz -dc` with the compressed stream on its stdin and the
// decompressed one on its stdout.
type xzProcess struct {
	cmd     *exec.Cmd
	stdout  io.ReadCloser
	stderr  *tailBuffer
	fed     chan struct{} // closed when the feeding goroutine returns
	feedErr error         // the compressed reader's error, set before fed closes
	fedN    int64         // bytes given to xz, set before fed closes
	version string
	done    bool
	err     error // what Read returns once the process has ended
}

func startXZ(ctx context.Context, path string, compressed io.Reader) (*xzProcess, error) {
	p := &xzProcess{stderr: &tailBuffer{max: 4096}, fed: make(chan struct{}), version: xzVersion(path)}
	// CommandContext kills the process when ctx ends; Read or close reaps it.
	p.cmd = exec.CommandContext(ctx, path, "--decompress", "--stdout", "--quiet")
	p.cmd.Env = append(os.Environ(), "LC_ALL=C") // its messages are parsed below
	p.cmd.Stderr = p.stderr
	stdin, err := p.cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	if p.stdout, err = p.cmd.StdoutPipe(); err != nil {
		return nil, err
	}
	if err := p.cmd.Start(); err != nil {
		return nil, fmt.Errorf("decompress xz: starting %s: %w", path, err)
	}
	go func() {
		defer close(p.fed)
		n, err := io.Copy(stdin, markReader{compressed})
		p.fedN = n
		// An error writing to xz is xz having stopped (it found the
		// stream damaged, or was killed): xz's exit tells why. An error
		// reading compressed is the caller's to hear.
		var re readErr
		if errors.As(err, &re) {
			p.feedErr = re.err
		}
		stdin.Close()
	}()
	return p, nil
}

func (p *xzProcess) Read(b []byte) (int, error) {
	if p.done {
		return 0, p.err
	}
	n, err := p.stdout.Read(b)
	if err != nil {
		// End of output (or the pipe broken by a kill): the process has
		// ended or is ending; its exit status says which.
		p.finish(false)
		if n > 0 && p.err == io.EOF {
			return n, nil
		}
		return n, p.err
	}
	return n, nil
}

// finish reaps the process (killing it first when kill) and waits for the
// feeding goroutine, then sets p.err from what happened.
func (p *xzProcess) finish(kill bool) {
	if p.done {
		return
	}
	p.done = true
	if kill {
		p.cmd.Process.Kill()
	}
	waitErr := p.cmd.Wait()
	<-p.fed
	switch {
	case kill:
		p.err = errors.New("decompress xz: closed")
	case p.feedErr != nil:
		p.err = fmt.Errorf("decompress xz: reading the compressed stream: %w", p.feedErr)
	case waitErr == nil:
		p.err = io.EOF
	case p.fedN < xzHeaderSize:
		// xz says "File format not recognized" of a file cut inside its
		// header; for a caller that knows the file is xz, it was cut.
		p.err = fmt.Errorf("decompress xz: %w (%d bytes, not even a header)", ErrTruncated, p.fedN)
	default:
		p.err = xzError(waitErr, p.stderr.String())
	}
}

// xzHeaderSize is the size of an xz stream's header.
const xzHeaderSize = 12

// xzError maps xz's complaint to the package's errors: an early end to
// ErrTruncated, damaged data to ErrCorrupt; anything else (killed, out of
// memory) is told as it is.
func xzError(waitErr error, stderr string) error {
	msg := strings.TrimSpace(stderr)
	if msg == "" {
		msg = waitErr.Error()
	}
	switch {
	case strings.Contains(msg, "Unexpected end of input"):
		return fmt.Errorf("decompress xz: %w (xz: %s)", ErrTruncated, msg)
	case strings.Contains(msg, "Compressed data is corrupt"),
		strings.Contains(msg, "File format not recognized"),
		strings.Contains(msg, "Unsupported type of integrity check"),
		strings.Contains(msg, "Unsupported options"):
		return fmt.Errorf("decompress xz: %w (xz: %s)", ErrCorrupt, msg)
	}
	return fmt.Errorf("decompress xz: the xz tool failed: %s", msg)
}

func (p *xzProcess) close() { p.finish(true) }

func (p *xzProcess) tool() string { return p.version }

// readErr marks an error of the compressed reader, as opposed to one of
// the pipe to xz.
type readErr struct{ err error }

func (e readErr) Error() string { return e.err.Error() }

// markReader marks its reader's errors (but io.EOF) as readErr.
type markReader struct{ r io.Reader }

func (m markReader) Read(b []byte) (int, error) {
	n, err := m.r.Read(b)
	if err != nil && err != io.EOF {
		err = readErr{err}
	}
	return n, err
}

// tailBuffer keeps the last max bytes written to it: xz's stderr, bounded.
type tailBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
	max int
}

func (t *tailBuffer) Write(b []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.buf.Write(b)
	if extra := t.buf.Len() - t.max; extra > 0 {
		t.buf.Next(extra)
	}
	return len(b), nil
}

func (t *tailBuffer) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.buf.String()
}
