package nodeagent

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestRedirectsAreCheckedAtDialTime: the client's dial check covers the
// connection a redirect opens, so a public mirror cannot bounce the agent
// to an internal address. Here "public" is the first server's address.
func TestRedirectsAreCheckedAtDialTime(t *testing.T) {
	internal := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, "internal data")
	}))
	defer internal.Close()
	public := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/to-internal":
			http.Redirect(w, r, internal.URL+"/secret", http.StatusFound)
		case "/to-file":
			http.Redirect(w, r, "file:///etc/passwd", http.StatusFound)
		default:
			http.Redirect(w, r, r.URL.Path+"x", http.StatusFound) // a loop
		}
	}))
	defer public.Close()
	publicAddr := strings.TrimPrefix(public.URL, "http://")
	control := func(network, address string, c syscall.RawConn) error {
		if address == publicAddr {
			return nil
		}
		return dialControl(network, address, c)
	}
	client := newUpstreamClient(upstreamOptions{control: control, headerTimeout: 5 * time.Second})
	for path, want := range map[string]string{
		"/to-internal": "loopback",
		"/to-file":     "only http and https",
		"/loop":        "redirects",
	} {
		req, _ := http.NewRequestWithContext(context.Background(), http.MethodGet, public.URL+path, nil)
		resp, err := client.Do(req)
		if err == nil {
			resp.Body.Close()
			t.Errorf("%s: followed to %s; want refused", path, resp.Request.URL)
			continue
		}
		fe, ok := asForbidden(err)
		if !ok || !strings.Contains(fe.msg, want) {
			t.Errorf("%s: %v; want a refusal about %q", path, err, want)
		}
		if got := requestError(context.Background(), err, req); !strings.Contains(got.Error(), "url_forbidden") {
			t.Errorf("%s: classified as %v; want url_forbidden", path, got)
		}
	}
}

func TestParseContentRange(t *testing.T) {
	cases := []struct {
		in           string
		start, total int64
		ok           bool
	}{
		{"bytes 100-199/200", 100, 200, true},
		{"bytes 0-0/1", 0, 1, true},
		{"bytes */500", -1, 500, true},
		{"bytes 100-199/*", 0, 0, false},
		{"items 1-2/3", 0, 0, false},
		{"bytes -5-10/20", 0, 0, false},
		{"", 0, 0, false},
	}
	for _, tc := range cases {
		start, total, ok := parseContentRange(tc.in)
		if ok != tc.ok || (ok && (start != tc.start || total != tc.total)) {
			t.Errorf("parseContentRange(%q) = %d, %d, %v", tc.in, start, total, ok)
		}
	}
}

func TestDiskErrorMapsENOSPC(t *testing.T) {
	p := &pool{id: "p", dir: "/pool"}
	for _, err := range []error{syscall.ENOSPC, syscall.EDQUOT, fmt.Errorf("write: %w", syscall.ENOSPC)} {
		if got := diskError(p, err); !strings.HasPrefix(got.Error(), "disk_full") {
			t.Errorf("diskError(%v) = %v; want disk_full", err, got)
		}
	}
	if got := diskError(p, errors.New("EIO")); strings.HasPrefix(got.Error(), "disk_full") {
		t.Errorf("an I/O error became disk_full: %v", got)
	}
}
