package nodeagent_test

import (
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/quantix/cloudimages/fault"
	"github.com/quantix/cloudimages/internal/testenv"
	"github.com/quantix/cloudimages/nodeagent/agentclient"
)

// uploaderConn is a TCP connection pair on loopback: the uploader's end,
// which the test writes the body into, and the end the relay reads, as
// the API has it once it took the connection over.
func uploaderConn(t *testing.T) (uploader, relayed net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, _ := ln.Accept()
		accepted <- c
	}()
	uploader, err = net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	relayed = <-accepted
	if relayed == nil {
		t.Fatal("accept failed")
	}
	t.Cleanup(func() { uploader.Close(); relayed.Close() })
	return uploader, relayed
}

func TestRelayUploadMovesTheBodyToTheAgent(t *testing.T) {
	h := newHarness(t, nil)
	data := testenv.QCOW2Image(6<<20, 31)
	sum := testenv.SHA256(data)
	startUpload(t, h.client, "relay-1", data, sum)
	if !h.client.CanRelay() {
		t.Fatal("CanRelay is false for an agent on plain HTTP")
	}
	uploader, relayed := uploaderConn(t)
	head := data[:1000] // what the API's server had read with the headers
	go func() { _, _ = uploader.Write(data[len(head):]) }()
	u, sent, err := h.client.RelayUpload(ctx(t), "relay-1", 0, head, relayed, int64(len(data)))
	if err != nil {
		t.Fatal(err)
	}
	if u.Offset != int64(len(data)) || sent != int64(len(data)) {
		t.Fatalf("offset %d, %d bytes sent; want both %d", u.Offset, sent, len(data))
	}
	assertPublished(t, waitFinished(t, h.client, "relay-1"), h.pool, data, sum)
}

// A body the uploader stops sending half way (its connection closed) is
// ended at the agent too, which keeps every byte that came: the offset
// the uploader resumes from.
func TestRelayUploadCutShortKeepsWhatCame(t *testing.T) {
	h := newHarness(t, nil)
	data := testenv.QCOW2Image(6<<20, 32)
	sum := testenv.SHA256(data)
	startUpload(t, h.client, "relay-2", data, sum)
	uploader, relayed := uploaderConn(t)
	const part = 2<<20 + 777
	go func() {
		_, _ = uploader.Write(data[:part])
		uploader.Close()
	}()
	u, sent, err := h.client.RelayUpload(ctx(t), "relay-2", 0, nil, relayed, int64(len(data)))
	if err != nil {
		t.Fatal(err)
	}
	if u.Offset != part || sent != part {
		t.Fatalf("offset %d, %d bytes sent; want both %d", u.Offset, sent, part)
	}
	if _, err := write(t, h.client, "relay-2", part, data[part:]); err != nil {
		t.Fatal(err)
	}
	assertPublished(t, waitFinished(t, h.client, "relay-2"), h.pool, data, sum)
}

// The agent refuses a body at the wrong offset before reading it: the
// relay returns the refusal at once instead of waiting for the uploader's
// bytes, which keep coming.
func TestRelayUploadRefusedBeforeTheBodyEnds(t *testing.T) {
	h := newHarness(t, nil)
	data := testenv.QCOW2Image(4<<20, 33)
	startUpload(t, h.client, "relay-3", data, testenv.SHA256(data))
	if _, err := write(t, h.client, "relay-3", 0, data[:1<<20]); err != nil {
		t.Fatal(err)
	}
	uploader, relayed := uploaderConn(t)
	go func() { _, _ = uploader.Write(data[:64<<10]) }() // then nothing: the uploader waits
	_, _, err := h.client.RelayUpload(ctx(t), "relay-3", 0, nil, relayed, int64(len(data)))
	if fe, ok := fault.As(err); !ok || fe.Code != fault.Conflict {
		t.Fatalf("relay at a wrong offset: %v, want conflict", err)
	}
	u, err := h.client.Upload(ctx(t), "relay-3")
	if err != nil || u.Offset != 1<<20 {
		t.Fatalf("upload after the refusal: %+v (%v), want it still at %d", u, err, 1<<20)
	}
}

// An agent that goes away mid-body is node_unreachable, retryable.
func TestRelayUploadToAnAgentThatDies(t *testing.T) {
	h := newHarness(t, nil)
	data := testenv.QCOW2Image(4<<20, 34)
	startUpload(t, h.client, "relay-4", data, testenv.SHA256(data))
	// A front that takes the PATCH's connection, then drops it half way.
	front := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		buf := make([]byte, 1<<20)
		_, _ = r.Body.Read(buf)
		conn, _, err := http.NewResponseController(w).Hijack()
		if err == nil {
			conn.Close()
		}
	}))
	defer front.Close()
	uploader, relayed := uploaderConn(t)
	go func() { _, _ = uploader.Write(data) }()
	c := agentclient.New(front.URL, testToken)
	_, _, err := c.RelayUpload(ctx(t), "relay-4", 0, nil, relayed, int64(len(data)))
	if fe, ok := fault.As(err); !ok || fe.Code != fault.NodeUnreachable || !fe.Retryable {
		t.Fatalf("relay to an agent that dropped the connection: %v, want node_unreachable, retryable", err)
	}
	// Nothing listens: the same.
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	addr := ln.Addr().String()
	ln.Close()
	_, _, err = agentclient.New(addr, testToken).RelayUpload(ctx(t), "relay-4", 0, nil, relayed, int64(len(data)))
	if fe, ok := fault.As(err); !ok || fe.Code != fault.NodeUnreachable || !fe.Retryable {
		t.Fatalf("relay to no agent: %v, want node_unreachable, retryable", err)
	}
}

// A cancelled request stops the relay, though neither side ends it.
func TestRelayUploadStopsWhenCancelled(t *testing.T) {
	h := newHarness(t, nil)
	data := testenv.QCOW2Image(4<<20, 35)
	startUpload(t, h.client, "relay-5", data, testenv.SHA256(data))
	uploader, relayed := uploaderConn(t)
	_, _ = uploader.Write(data[:512<<10]) // then the uploader waits
	c, cancel := context.WithCancel(ctx(t))
	time.AfterFunc(300*time.Millisecond, cancel)
	_, _, err := h.client.RelayUpload(c, "relay-5", 0, nil, relayed, int64(len(data)))
	if err == nil || c.Err() == nil {
		t.Fatalf("relay returned %v before it was cancelled", err)
	}
}

// Over TLS, or through a proxy, the relay is not used.
func TestCanRelayOnlyOnPlainHTTP(t *testing.T) {
	if agentclient.New("https://127.0.0.1:1", testToken).CanRelay() {
		t.Error("CanRelay is true for an https agent")
	}
	t.Setenv("HTTP_PROXY", "http://127.0.0.1:3128")
	if agentclient.New("http://node.example:7000", testToken).CanRelay() {
		t.Error("CanRelay is true for an agent reached through HTTP_PROXY")
	}
}
