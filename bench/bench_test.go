package main

import (
	"crypto/sha256"
	"encoding/hex"
	"io"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"
)

func TestMirrorServesRangesAndAliases(t *testing.T) {
	dir := t.TempDir()
	src, err := makeSource(dir, "f.img", 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(src.Path)
	if err != nil {
		t.Fatal(err)
	}
	if sum := sha256.Sum256(data); hex.EncodeToString(sum[:]) != src.SHA256 {
		t.Fatalf("makeSource's sha256 %s does not match the file", src.SHA256)
	}
	again, err := makeSource(dir, "f.img", 1<<20)
	if err != nil || again.SHA256 != src.SHA256 {
		t.Fatalf("a second makeSource should reuse the file: %v, %s", err, again.SHA256)
	}
	m, err := startMirror(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer m.close()

	get := func(url string, hdr map[string]string) (*http.Response, []byte) {
		t.Helper()
		req, _ := http.NewRequest(http.MethodGet, url, nil)
		for k, v := range hdr {
			req.Header.Set(k, v)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatal(err)
		}
		return resp, b
	}
	resp, body := get(m.fileURL("alias.img", "f.img", 0), nil)
	if resp.StatusCode != http.StatusOK || string(body) != string(data) {
		t.Fatalf("alias: %s, %d bytes; want 200 and the file", resp.Status, len(body))
	}
	etag := resp.Header.Get("ETag")
	resp, body = get(m.fileURL("f.img", "", 0), map[string]string{"Range": "bytes=1000-", "If-Range": etag})
	if resp.StatusCode != http.StatusPartialContent || string(body) != string(data[1000:]) {
		t.Fatalf("range with the right ETag: %s, %d bytes; want 206 and the rest", resp.Status, len(body))
	}
	resp, _ = get(m.fileURL("f.img", "", 0), map[string]string{"Range": "bytes=1000-", "If-Range": `"other"`})
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("range with a stale ETag: %s; want 200 (the whole file)", resp.Status)
	}
	resp, body = get(m.fileURL("slow.img", "f.img", 4<<20), map[string]string{"Range": "bytes=0-99999"})
	if resp.StatusCode != http.StatusPartialContent || string(body) != string(data[:100000]) {
		t.Fatalf("throttled range: %s, %d bytes", resp.Status, len(body))
	}
	if got := m.bytesFor("alias.img"); got != 1<<20 {
		t.Errorf("bytes counted for alias.img: %d, want %d", got, 1<<20)
	}
	if got := m.bytesFor("slow.img"); got != 100000 {
		t.Errorf("bytes counted for slow.img: %d, want 100000", got)
	}
	if c := m.countByName(); c["f.img"] != 2 || c["alias.img"] != 1 {
		t.Errorf("responses by name: %v", c)
	}
	if resp, _ := get(m.url+"/files/missing.img", nil); resp.StatusCode != http.StatusNotFound {
		t.Errorf("missing file: %s, want 404", resp.Status)
	}
	if resp, body := get(m.fileURL("x.img", "../f.img", 0), nil); resp.StatusCode != http.StatusOK || string(body) != string(data) {
		t.Errorf("src is reduced to a base name inside the dir: %s, %d bytes; want 200 and f.img", resp.Status, len(body))
	}
}

func TestStatistics(t *testing.T) {
	ms := func(v ...int) []time.Duration {
		var out []time.Duration
		for _, x := range v {
			out = append(out, time.Duration(x)*time.Millisecond)
		}
		return out
	}
	if got := median(ms(5, 1, 3)); got != 3*time.Millisecond {
		t.Errorf("median of 5,1,3 = %v", got)
	}
	if got := median(ms(4, 1, 3, 2)); got != 2500*time.Microsecond {
		t.Errorf("median of 4,1,3,2 = %v", got)
	}
	hundred := make([]int, 100)
	for i := range hundred {
		hundred[i] = 100 - i
	}
	if p50, p99 := percentile(ms(hundred...), 50), percentile(ms(hundred...), 99); p50 != 50*time.Millisecond || p99 != 99*time.Millisecond {
		t.Errorf("p50, p99 of 1..100 = %v, %v", p50, p99)
	}
	if percentile(nil, 50) != 0 || median(nil) != 0 {
		t.Error("empty input should give 0")
	}
	curl := &contestant{byRnd: map[int]time.Duration{0: time.Second, 1: time.Second, 2: 10 * time.Second}}
	agent := &contestant{byRnd: map[int]time.Duration{0: 2 * time.Second, 1: 2 * time.Second, 2: time.Second}}
	if got := pairedRatio(curl, agent); got < 0.49 || got > 0.51 {
		t.Errorf("paired ratio = %v, want 0.5 (the noisy round is outvoted)", got)
	}
}

func TestFlagsParsing(t *testing.T) {
	if _, err := selectParts("transfer,nope"); err == nil || !strings.Contains(err.Error(), "nope") {
		t.Errorf("an unknown part should be named in the error, got %v", err)
	}
	got, err := selectParts(" scale ,memory")
	if err != nil || !got["scale"] || !got["memory"] || got["transfer"] {
		t.Errorf("selectParts = %v, %v", got, err)
	}
	if v, err := parseInts("300, 1000"); err != nil || len(v) != 2 || v[1] != 1000 {
		t.Errorf("parseInts = %v, %v", v, err)
	}
	if _, err := parseInts("300,-1"); err == nil {
		t.Error("a negative count should be refused")
	}
}

func TestProcessAccounting(t *testing.T) {
	m, err := procMemory(os.Getpid())
	if err != nil || m.RSS <= 0 || m.Peak < m.RSS {
		t.Fatalf("procMemory(self) = %+v, %v", m, err)
	}
	start := cpuTime(os.Getpid())
	for deadline := time.Now().Add(5 * time.Second); cpuTime(os.Getpid()) <= start && time.Now().Before(deadline); {
		sha256.Sum256(make([]byte, 1<<20))
	}
	if cpuTime(os.Getpid()) <= start {
		t.Error("cpuTime does not grow while the process works")
	}
}
