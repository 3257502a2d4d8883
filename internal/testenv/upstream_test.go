package testenv

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/quantix/cloudimages/catalog"
)

func get(t *testing.T, url string, header ...string) (*http.Response, []byte, error) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, url, nil)
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	return resp, body, err
}

func TestUpstreamServesRangesAndValidators(t *testing.T) {
	u := NewUpstream(t)
	data := QCOW2Image(100_000, 1)
	url := u.AddFile("a.qcow2", data)
	resp, body, err := get(t, url)
	if err != nil || resp.StatusCode != 200 || !bytes.Equal(body, data) {
		t.Fatalf("GET: %v %d %d bytes", err, resp.StatusCode, len(body))
	}
	if !bytes.HasPrefix(body, []byte("QFI\xfb\x00\x00\x00\x03")) {
		t.Fatalf("no qcow2 magic: % x", body[:8])
	}
	etag := resp.Header.Get("ETag")
	resp, body, _ = get(t, url, "Range", "bytes=1000-", "If-Range", etag)
	if resp.StatusCode != 206 || !bytes.Equal(body, data[1000:]) || resp.Header.Get("Content-Range") != "bytes 1000-99999/100000" {
		t.Fatalf("range: %d %q %d bytes", resp.StatusCode, resp.Header.Get("Content-Range"), len(body))
	}
	resp, body, _ = get(t, url, "Range", "bytes=1000-", "If-Range", `"other"`)
	if resp.StatusCode != 200 || len(body) != len(data) {
		t.Fatalf("If-Range mismatch: %d, %d bytes", resp.StatusCode, len(body))
	}
	if got, want := u.BytesServed("a.qcow2"), int64(3*len(data)-1000); got != want || u.Requests("a.qcow2") != 3 {
		t.Fatalf("served %d bytes in %d requests, want %d in 3", got, u.Requests("a.qcow2"), want)
	}
	if resp, _, _ := get(t, u.FileURL("missing")); resp.StatusCode != 404 {
		t.Fatalf("missing file: %d", resp.StatusCode)
	}
}

func TestUpstreamFaults(t *testing.T) {
	u := NewUpstream(t)
	data := QCOW2Image(200_000, 2)
	url := u.AddFile("f.img", data)

	u.SetFault("f.img", Fault{Status: []int{500, 503}})
	for _, want := range []int{500, 503, 200} {
		if resp, _, _ := get(t, url); resp.StatusCode != want {
			t.Fatalf("status: got %d, want %d", resp.StatusCode, want)
		}
	}

	u.SetFault("f.img", Fault{DropAfterBytes: 5000, Drops: 1})
	_, body, err := get(t, url)
	if !errors.Is(err, io.ErrUnexpectedEOF) || len(body) != 5000 {
		t.Fatalf("drop: %v after %d bytes", err, len(body))
	}
	if _, body, err = get(t, url); err != nil || len(body) != len(data) {
		t.Fatalf("after the drop: %v, %d bytes", err, len(body))
	}

	u.SetFault("f.img", Fault{StallAfterBytes: 5000, Drops: 1})
	client := &http.Client{Timeout: 300 * time.Millisecond}
	resp, err := client.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	n, err := io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if n != 5000 || err == nil {
		t.Fatalf("stall: %d bytes, %v; want 5000 then a timeout", n, err)
	}

	u.SetFault("f.img", Fault{NoRange: true})
	resp, body, _ = get(t, url, "Range", "bytes=10-")
	if resp.StatusCode != 200 || len(body) != len(data) || resp.Header.Get("Accept-Ranges") != "" {
		t.Fatalf("no range: %d, %d bytes", resp.StatusCode, len(body))
	}

	u.SetFault("f.img", Fault{WrongBytes: true})
	if _, body, _ = get(t, url); len(body) != len(data) || bytes.Equal(body, data) {
		t.Fatal("wrong bytes served the right bytes")
	}

	u.SetFault("f.img", Fault{HTML: true})
	if resp, body, _ = get(t, url); !strings.HasPrefix(string(body), "<!DOCTYPE html>") || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/html") {
		t.Fatalf("HTML: %q", body)
	}

	u.SetFault("f.img", Fault{ShortBy: 1000})
	if _, body, err = get(t, url); err != nil || len(body) != len(data)-1000 {
		t.Fatalf("short: %v, %d bytes", err, len(body))
	}

	u.SetFault("f.img", Fault{WeakETag: true})
	if resp, _, _ = get(t, url); !strings.HasPrefix(resp.Header.Get("ETag"), `W/"`) {
		t.Fatalf("weak ETag: %q", resp.Header.Get("ETag"))
	}

	// A body longer than its Content-Length: read from the raw connection,
	// since net/http's client stops at the length.
	u.SetFault("f.img", Fault{LongerBy: 3000})
	conn, err := net.Dial("tcp", strings.TrimPrefix(u.URL(), "http://"))
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(conn, "GET /f.img HTTP/1.1\r\nHost: x\r\n\r\n")
	raw, _ := io.ReadAll(conn)
	conn.Close()
	if !bytes.Contains(raw, []byte(fmt.Sprintf("Content-Length: %d\r\n", len(data)))) || !bytes.Contains(raw, append(data[len(data)-100:], make([]byte, 3000)...)) {
		t.Fatalf("longer body: %d raw bytes", len(raw))
	}

	// An endless body goes past the file and on, until the client hangs up;
	// then the response ends.
	u.SetFault("f.img", Fault{Endless: true})
	resp, err = http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	if n, err := io.CopyN(io.Discard, resp.Body, int64(len(data))+1<<20); err != nil || resp.ContentLength != -1 {
		t.Fatalf("endless: %d bytes, %v, length %d", n, err, resp.ContentLength)
	}
	if u.InFlight("f.img") != 1 {
		t.Errorf("in flight during the endless body: %d, want 1", u.InFlight("f.img"))
	}
	resp.Body.Close()
	deadline := time.Now().Add(10 * time.Second)
	for u.InFlight("f.img") != 0 {
		if time.Now().After(deadline) {
			t.Fatal("endless response still in flight 10s after the client hung up")
		}
		time.Sleep(10 * time.Millisecond)
	}

	before := u.Requests("f.img")
	u.SetFault("f.img", Fault{ChangeETagAfter: before + 1})
	resp, _, _ = get(t, url)
	first := resp.Header.Get("ETag")
	resp, _, _ = get(t, url)
	if second := resp.Header.Get("ETag"); second == first {
		t.Fatalf("ETag did not change: %s", first)
	}
}

func TestUpstreamChecksumFilesParse(t *testing.T) {
	u := NewUpstream(t)
	u.AddFile("noble/noble.img", QCOW2Image(1000, 3))
	for _, format := range []string{SHA256SUMS, SHA256SUMSBin, SHA512SUMS, CHECKSUMBSD, CHECKSUMBSD5} {
		_, body, _ := get(t, u.AddChecksumFile("noble/"+format, format, "noble/noble.img"))
		want := u.SHA256("noble/noble.img")
		if strings.Contains(format, "512") {
			want = u.SHA512("noble/noble.img")
		}
		found := false
		for _, fs := range catalog.ParseChecksumFile(body) {
			found = found || (fs.Name == "noble.img" && fs.Sum == want)
		}
		if !found {
			t.Errorf("%s: noble.img %s not in\n%s", format, want, body)
		}
	}
}
