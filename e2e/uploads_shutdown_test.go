package e2e

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/quantix/cloudimages/internal/testenv"
)

// startRelayedPatch opens a PATCH of the whole of data on the stack's
// API and sends its body slowly until the node reports bytes of it (HEAD),
// so that the API is relaying it, mid-body. It returns the connection and
// how many bytes were sent.
func startRelayedPatch(t *testing.T, s *testenv.Stack, loc string, data []byte) (net.Conn, int) {
	t.Helper()
	conn := openPatch(t, s.APIURL(), s.API.Token, loc, 0, len(data))
	sent := 0
	for offsetAt(t, s.APIURL(), s.API.Token, loc) == 0 {
		if sent >= len(data)/2 {
			t.Fatalf("the node reported none of the %d bytes sent of the PATCH", sent)
		}
		if _, err := conn.Write(data[sent : sent+64<<10]); err != nil {
			t.Fatalf("writing the body at %d: %v", sent, err)
		}
		sent += 64 << 10
		time.Sleep(20 * time.Millisecond) // a slow uploader: the node checkpoints what it has every 250 ms
	}
	return conn, sent
}

// terminateAPI sends the stack's API SIGTERM and waits until it has begun
// shutting down.
func terminateAPI(t *testing.T, s *testenv.Stack) {
	t.Helper()
	s.APIServer.Terminate()
	eventually(t, 10*time.Second, "the API logs that it shuts down", func() bool {
		return strings.Contains(s.APIServer.Log(), "API shutting down")
	})
}

// TestUploadRelayedPatchFinishesAcrossAPIShutdown: the API gets SIGTERM
// (a rolling restart) while it relays a PATCH body on the uploader's
// connection; the uploader sends the rest after the signal, and the PATCH
// is answered 204 with the whole offset before the API exits 0. The
// upload then ends READY through the restarted API.
func TestUploadRelayedPatchFinishesAcrossAPIShutdown(t *testing.T) {
	s := uploadStack(t)
	data := testenv.QCOW2Image(12<<20, 46)
	loc := create(t, s, len(data), meta("pool_id", "local-1", "name", "drain.qcow2", "checksum", testenv.SHA256(data)))
	conn, sent := startRelayedPatch(t, s, loc, data)

	terminateAPI(t, s)
	if _, err := conn.Write(data[sent:]); err != nil {
		t.Fatalf("sending the rest of the body (%d bytes from %d) after SIGTERM: %v; the API cut the PATCH it relayed instead of letting it finish", len(data)-sent, sent, err)
	}
	answeredThenExited(t, s, conn, len(data), "the PATCH relayed when the API got SIGTERM")
	if log := s.APIServer.Log(); !strings.Contains(log, "upload body relayed") {
		t.Fatal("the API did not relay the PATCH (its log has no \"upload body relayed\"): this test is about the hijacked connection")
	}

	s.APIServer.Start()
	checkUploaded(t, waitStatus(t, s, strings.TrimPrefix(loc, "/v1/uploads/"), "READY", time.Minute), data, true)
}

// TestUploadRelayCutAtShutdownTimeoutResumes: a relayed PATCH whose
// uploader stalls outlasts the API's --shutdown-timeout. The bytes sent
// after SIGTERM still reach the node; at the timeout the API answers the
// PATCH 503 and closes the connection, says in its log how many uploads it
// cut, and exits. The node keeps every byte sent, and the upload resumes
// from there to READY through the restarted API.
func TestUploadRelayCutAtShutdownTimeoutResumes(t *testing.T) {
	const timeout = 3 * time.Second
	s := testenv.StartStack(t, testenv.StackOptions{
		APIToken:   "api-token-" + strconv.FormatInt(time.Now().UnixNano(), 36),
		Env:        []string{"CLOUDIMAGES_UPLOAD_TTL=" + uploadTTL.String(), "CLOUDIMAGES_SHUTDOWN_TIMEOUT=" + timeout.String()},
		WorkerArgs: []string{"--node-grace", "2s", "--heartbeat-timeout", "6s", "--no-node-timeout", "10s"},
	})
	data := testenv.QCOW2Image(12<<20, 47)
	loc := create(t, s, len(data), meta("pool_id", "local-1", "name", "cut-at-timeout.qcow2", "checksum", testenv.SHA256(data)))
	conn, sent := startRelayedPatch(t, s, loc, data)

	terminateAPI(t, s)
	terminated := time.Now()
	more := 1<<20 + 777 // odd: no buffer on the way ends there
	if _, err := conn.Write(data[sent : sent+more]); err != nil {
		t.Fatalf("sending %d more bytes after SIGTERM: %v; the API cut the PATCH it relayed at once instead of at its shutdown timeout", more, err)
	}
	sent += more
	// The uploader stalls: the API cuts the PATCH at its timeout.
	_ = conn.SetReadDeadline(time.Now().Add(time.Minute))
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatalf("the PATCH cut at the shutdown timeout was not answered: %v", err)
	}
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") == "" || !resp.Close {
		t.Fatalf("the PATCH cut at the shutdown timeout: %s (Retry-After %q, Connection: close %v) %s; want 503 with Retry-After, Connection: close",
			resp.Status, resp.Header.Get("Retry-After"), resp.Close, body)
	}
	if waited := time.Since(terminated); waited < timeout-time.Second {
		t.Errorf("the PATCH was cut %s after SIGTERM, before the %s shutdown timeout", waited, timeout)
	}
	if _, err := conn.Read(make([]byte, 1)); err != io.EOF {
		t.Errorf("after its answer the connection of the cut PATCH did not end: read %v, want EOF", err)
	}
	if !s.APIServer.Wait(30 * time.Second) {
		t.Fatal("the API did not exit after its shutdown timeout")
	}
	state := s.APIServer.State()
	if state != "exit status 1" {
		t.Fatalf("the API ended with %q after cutting an upload at its shutdown timeout, want exit status 1 (it exits by itself, and says the shutdown was not clean)", state)
	}
	if log := s.APIServer.Log(); !strings.Contains(log, "uploads_cut=1") {
		t.Fatal("the API's log does not say it cut 1 upload (uploads_cut=1) at the shutdown timeout")
	}

	s.APIServer.Start()
	kept := 0
	eventually(t, 10*time.Second, "the node keeps every byte sent of the cut PATCH (all sent before the timeout)", func() bool {
		kept = offsetAt(t, s.APIURL(), s.API.Token, loc)
		return kept == sent
	})
	t.Logf("%d bytes sent before SIGTERM and after, all kept by the node; the API cut the PATCH and ended with %s", kept, state)
	finishAt(t, s.APIURL(), s.API.Token, loc, data)
	checkUploaded(t, waitStatus(t, s, strings.TrimPrefix(loc, "/v1/uploads/"), "READY", time.Minute), data, true)
}

// TestUploadPatchWaitingForItsNodeAtAPIShutdownIsAnswered: a PATCH that
// reached the API before SIGTERM but waits for its upload's node (no
// worker has created the node-side upload yet) goes on once the node is
// there, while the API shuts down. It is not taken over into a relay the
// shutdown would forget and cut: the API streams it through its HTTP
// server, whose shutdown waits for it, answers 204 with the whole offset,
// and exits 0.
func TestUploadPatchWaitingForItsNodeAtAPIShutdownIsAnswered(t *testing.T) {
	s := uploadStack(t)
	s.Workers[0].Stop() // the upload waits for its node
	data := testenv.QCOW2Image(6<<20, 48)
	loc := create(t, s, len(data), meta("pool_id", "local-1", "name", "late.qcow2", "checksum", testenv.SHA256(data)))
	conn := openPatch(t, s.APIURL(), s.API.Token, loc, 0, len(data))
	eventually(t, 10*time.Second, "the API logs that the PATCH waits for the upload's node", func() bool {
		return strings.Contains(s.APIServer.Log(), "upload PATCH waits for its node")
	})

	terminateAPI(t, s)
	s.Workers[0].Start() // the node-side upload is created: the PATCH goes on
	// The body comes slowly (2 s): an API that forgot the PATCH would
	// have exited long before its end.
	for off := 0; off < len(data); off += 64 << 10 {
		if _, err := conn.Write(data[off:min(off+64<<10, len(data))]); err != nil {
			t.Fatalf("sending the body of the PATCH that went on during the shutdown, at %d: %v; the API cut it", off, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	answeredThenExited(t, s, conn, len(data), "the PATCH that went on during the shutdown")
	if log := s.APIServer.Log(); !strings.Contains(log, "upload body streamed") || strings.Contains(log, "upload body relayed") {
		t.Error("the PATCH that went on during the shutdown was relayed on a taken-over connection (the API's log says \"upload body relayed\"), not streamed through the HTTP server, whose shutdown waits for it")
	}
	s.APIServer.Start()
	checkUploaded(t, waitStatus(t, s, strings.TrimPrefix(loc, "/v1/uploads/"), "READY", time.Minute), data, true)
}

// answeredThenExited reads the answer to the PATCH on conn (what names it
// in failures), wants 204 with Upload-Offset size, then the API's exit
// with status 0: a shutdown that cut nothing.
func answeredThenExited(t *testing.T, s *testenv.Stack, conn net.Conn, size int, what string) {
	t.Helper()
	_ = conn.SetReadDeadline(time.Now().Add(time.Minute))
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatalf("%s was not answered: %v", what, err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	if resp.StatusCode != http.StatusNoContent || resp.Header.Get("Upload-Offset") != strconv.Itoa(size) {
		t.Fatalf("%s: %s, Upload-Offset %q; want 204 with %d", what, resp.Status, resp.Header.Get("Upload-Offset"), size)
	}
	if !s.APIServer.Wait(30 * time.Second) {
		t.Fatalf("the API did not exit after %s was answered", what)
	}
	if state := s.APIServer.State(); state != "exit status 0" {
		t.Fatalf("the API ended with %q after a shutdown with nothing cut, want exit status 0", state)
	}
}
