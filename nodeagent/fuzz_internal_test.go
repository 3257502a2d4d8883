package nodeagent

import (
	"strings"
	"testing"

	"github.com/quantix/cloudimages/nodeagent/agentclient"
)

// FuzzContentRange: parsing a mirror's Content-Range never panics and
// never yields a range that starts past the file or a negative size.
func FuzzContentRange(f *testing.F) {
	for _, s := range []string{"bytes 0-99/100", "bytes */100", "bytes 5-/7", "bytes 99999999999999999999-1/2", "bytes -1--1/-1"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, h string) {
		start, total, ok := parseContentRange(h)
		if !ok {
			return
		}
		if total < 0 || start < -1 {
			t.Fatalf("parseContentRange(%q) = %d, %d", h, start, total)
		}
	})
}

// FuzzCheckHead: the image check never panics, and a page that starts like
// HTML is never taken for a disk image.
func FuzzCheckHead(f *testing.F) {
	for _, s := range []string{"QFI\xfb\x00\x00\x00\x03", "<!DOCTYPE html>", "  <HTML>", "\xef\xbb\xbf<?xml version", "", "\x00\x00"} {
		f.Add([]byte(s), true)
	}
	f.Fuzz(func(t *testing.T, head []byte, qcow2 bool) {
		tr := &transfer{head: head, qcow2: qcow2, req: agentclient.DownloadRequest{FileName: "x.qcow2", URL: "http://m/x"}}
		err := tr.checkHead()
		lower := strings.ToLower(strings.TrimLeft(string(head), " \t\r\n\xef\xbb\xbf"))
		if strings.HasPrefix(lower, "<html") && err == nil {
			t.Fatalf("HTML %q accepted as a disk image", head)
		}
		if qcow2 && !strings.HasPrefix(string(head), "QFI\xfb") && err == nil {
			t.Fatalf("%q accepted as qcow2", head)
		}
	})
}
