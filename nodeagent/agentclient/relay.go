package agentclient

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"sync"
	"time"

	"golang.org/x/net/http/httpproxy"

	"github.com/quantix/cloudimages/fault"
)

// CanRelay reports whether RelayUpload can reach the agent: over plain
// HTTP and without a proxy, so that the connection it dials is the
// agent's own TCP socket. (Over TLS or through a proxy, WriteUpload does.)
func (c *Client) CanRelay() bool {
	u, err := url.Parse(c.base)
	if err != nil || u.Scheme != "http" || c.tls {
		return false
	}
	// The environment as it is now, not as http.ProxyFromEnvironment
	// read it once: the same in production, and testable.
	proxy, err := httpproxy.FromEnvironment().ProxyFunc()(u)
	return err == nil && proxy == nil
}

// RelayUpload is WriteUpload for a body that arrives on a connection: the
// uploader's, which the API took over from its HTTP server. head is what
// of the body was read already, src the connection the rest comes from;
// size counts both. The bytes go from src to the agent's socket with
// net.TCPConn.ReadFrom, which the kernel does with splice(2) when src is a
// TCP socket too: none of them is copied through the API's memory, which
// is most of what relaying an upload costs (measured in bench, part
// "upload"). sent is how many bytes of the body reached the agent; a body
// cut short is ended at the agent (half-close), which keeps what came and
// answers its offset, as for WriteUpload.
func (c *Client) RelayUpload(ctx context.Context, id string, offset int64, head []byte, src net.Conn, size int64) (u Upload, sent int64, err error) {
	path := UploadPath(id)
	target, err := url.Parse(c.base + path)
	if err != nil {
		return Upload{}, 0, fault.New(fault.InvalidRequest, "node address %q: %v", c.base, err)
	}
	host := target.Host
	if target.Port() == "" {
		host = net.JoinHostPort(target.Hostname(), "80")
	}
	d := net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}
	conn, err := d.DialContext(ctx, "tcp", host)
	if err != nil {
		if ctx.Err() != nil {
			return Upload{}, 0, ctx.Err()
		}
		return Upload{}, 0, fault.Retryable(fault.NodeUnreachable, "node agent at %s does not answer: %v", c.base, err)
	}
	defer conn.Close()
	req := &http.Request{Method: http.MethodPatch, URL: target, Host: target.Host, Header: http.Header{}, ContentLength: size, Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1}
	req.Header.Set("Content-Type", "application/offset+octet-stream")
	req.Header.Set(OffsetHeader, strconv.FormatInt(offset, 10))
	req.Header.Set("Content-Length", strconv.FormatInt(size, 10))
	req.Header.Set("Connection", "close")
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	// The stop function below unblocks both copies: a cancelled request,
	// or an agent that answered before the body ended.
	var once sync.Once
	stop := func() {
		once.Do(func() {
			_ = src.SetReadDeadline(time.Unix(1, 0))
			_ = conn.Close()
		})
	}
	defer context.AfterFunc(ctx, stop)()

	bw := bufio.NewWriterSize(conn, 4<<10)
	fmt.Fprintf(bw, "PATCH %s HTTP/1.1\r\nHost: %s\r\n", target.RequestURI(), target.Host)
	_ = req.Header.Write(bw)
	_, _ = bw.WriteString("\r\n")
	head = head[:min(int64(len(head)), size)]
	_, _ = bw.Write(head)
	if err := bw.Flush(); err != nil {
		return Upload{}, 0, c.relayFailed(ctx, err)
	}
	sent = int64(len(head))

	copied := make(chan error, 1)
	var n int64
	go func() {
		var cerr error
		n, cerr = conn.(io.ReaderFrom).ReadFrom(io.LimitReader(src, size-sent))
		if cerr == nil && n < size-sent {
			cerr = io.ErrUnexpectedEOF
		}
		if cerr != nil {
			// The uploader stopped sending: end the body at the agent,
			// which then keeps what came and answers.
			if tc, ok := conn.(*net.TCPConn); ok {
				_ = tc.CloseWrite()
			}
		}
		copied <- cerr
	}()
	resp, rerr := http.ReadResponse(bufio.NewReader(conn), req)
	if rerr == nil {
		defer resp.Body.Close()
		err = c.answer(resp, http.MethodPatch, path, &u)
	}
	if rerr != nil || resp.StatusCode >= 300 {
		// The agent refused the body before it ended, or went away:
		// stop reading the uploader. (It answers a success only once
		// the body has ended.)
		stop()
	}
	<-copied
	sent += n
	if rerr != nil {
		return Upload{}, sent, c.relayFailed(ctx, rerr)
	}
	return u, sent, err
}

func (c *Client) relayFailed(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return ctx.Err()
	}
	return fault.Retryable(fault.NodeUnreachable, "node agent at %s: sending the upload's bytes: %v", c.base, err)
}
