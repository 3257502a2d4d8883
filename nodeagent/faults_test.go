package nodeagent_test

import (
	"testing"
	"time"

	"github.com/quantix/cloudimages/fault"
	"github.com/quantix/cloudimages/internal/testenv"
	"github.com/quantix/cloudimages/nodeagent"
	"github.com/quantix/cloudimages/nodeagent/agentclient"
)

// TestUpstreamFaults runs one download per mirror fault and checks the end
// state: published with the right checksum, or the right error with no
// file and no partial data left.
func TestUpstreamFaults(t *testing.T) {
	const size = 2 << 20
	cases := []struct {
		name      string
		file      string
		data      []byte // default a qcow2 image of size bytes
		fault     testenv.Fault
		sha512    bool
		noSum     bool
		sizeBytes bool   // send size_bytes
		format    string // request format
		code      string // "" means published
		retryable bool
		// maxServed bounds what the mirror may send, in files (0: no bound).
		maxServed float64
		requests  int  // exact number of requests, when not 0
		stalls    bool // runs on an agent with a short stall timeout
	}{
		{name: "clean", file: "clean.qcow2", maxServed: 1, requests: 1},
		{name: "sha512", file: "sha512.qcow2", sha512: true, maxServed: 1},
		{name: "unverified reports its sha256", file: "nosum.img", noSum: true, maxServed: 1},
		{name: "dropped twice resumes with Range", file: "drop.qcow2", fault: testenv.Fault{DropAfterBytes: 700_000, Drops: 2}, maxServed: 1, requests: 3},
		{name: "dropped chunked body resumes", file: "chunked.qcow2", fault: testenv.Fault{NoLength: true, DropAfterBytes: 500_000, Drops: 1}, maxServed: 1, requests: 2},
		{name: "dropped on every response still progresses", file: "dropall.qcow2", data: testenv.QCOW2Image(4<<20, 99), fault: testenv.Fault{DropAfterBytes: 1_100_000}, maxServed: 1, requests: 4},
		{name: "500 then 503 then 200", file: "flaky.qcow2", fault: testenv.Fault{Status: []int{500, 503}}, maxServed: 1, requests: 3},
		{name: "no Range support restarts from zero", file: "norange.qcow2", fault: testenv.Fault{NoRange: true, DropAfterBytes: 1 << 20, Drops: 1}, maxServed: 1.6, requests: 2},
		{name: "changed ETag restarts from zero", file: "etag.qcow2", fault: testenv.Fault{ChangeETagAfter: 1, DropAfterBytes: 1 << 20, Drops: 1}, maxServed: 1.6, requests: 2},
		{name: "slow trickle", file: "slow.qcow2", data: testenv.QCOW2Image(300_000, 9), fault: testenv.Fault{BytesPerSecond: 1 << 20}, maxServed: 1},
		{name: "wrong bytes", file: "wrong.qcow2", fault: testenv.Fault{WrongBytes: true}, code: fault.ChecksumMismatch, requests: 1},
		{name: "404", file: "gone.qcow2", fault: testenv.Fault{Status: []int{404, 404, 404, 404}}, code: fault.UpstreamNotFound, requests: 1},
		{name: "410", file: "gone410.img", fault: testenv.Fault{Status: []int{410, 410, 410}}, code: fault.UpstreamNotFound, requests: 1},
		{name: "403", file: "denied.img", fault: testenv.Fault{Status: []int{403, 403, 403}}, code: fault.UpstreamNotFound, requests: 1},
		{name: "500 forever gives up, retryable", file: "down.qcow2", fault: testenv.Fault{Status: []int{500, 502, 503, 500, 500, 500}}, code: fault.UpstreamError, retryable: true, requests: 3},
		{name: "HTML page as qcow2", file: "portal.qcow2", fault: testenv.Fault{HTML: true}, code: fault.NotADiskImage},
		{name: "HTML page as raw", file: "portal.img", fault: testenv.Fault{HTML: true}, code: fault.NotADiskImage, noSum: true},
		{name: "raw bytes where qcow2 is expected", file: "raw.qcow2", data: make([]byte, 100_000), code: fault.NotADiskImage},
		{name: "raw bytes with format qcow2", file: "vendor.img", data: make([]byte, 100_000), format: "qcow2", code: fault.NotADiskImage},
		{name: "qcow2 bytes with format raw", file: "disk.img", format: "raw", code: fault.FormatMismatch},
		{name: "truncated file with size_bytes", file: "short.qcow2", fault: testenv.Fault{ShortBy: 4096}, sizeBytes: true, code: fault.NotADiskImage, requests: 1},
		{name: "truncated file with checksum", file: "short2.qcow2", fault: testenv.Fault{ShortBy: 4096}, code: fault.ChecksumMismatch},
		{name: "mirror stalls mid-body, then resumes", file: "stall.qcow2", fault: testenv.Fault{StallAfterBytes: 800_000, Drops: 1}, maxServed: 1, stalls: true},
		{name: "mirror stalls after a trickle every time", file: "stallall.qcow2", fault: testenv.Fault{StallAfterBytes: 1000}, code: fault.UpstreamError, retryable: true, requests: 3, stalls: true},
		{name: "hanging mirror", file: "hang.qcow2", fault: testenv.Fault{Hang: true}, code: fault.UpstreamError, retryable: true, requests: 3, stalls: true},
	}
	// A short stall timeout only where stalls are the point: on a loaded
	// machine a healthy transfer may pause longer than that.
	patient := newHarness(t, func(c *nodeagent.Config) { c.StallTimeout = 30 * time.Second })
	impatient := newHarness(t, func(c *nodeagent.Config) { c.StallTimeout = 400 * time.Millisecond })
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			h := patient
			if tc.stalls {
				h = impatient
			}
			data := tc.data
			if data == nil {
				data = testenv.QCOW2Image(size, int64(i))
			}
			url := h.up.AddFile(tc.file, data)
			h.up.SetFault(tc.file, tc.fault)
			req := agentclient.DownloadRequest{ID: "dl-" + tc.file, URL: url, FileName: tc.file, Checksum: testenv.SHA256(data), Format: tc.format}
			want := req.Checksum
			switch {
			case tc.sha512:
				req.Checksum = testenv.SHA512(data)
				want = req.Checksum
			case tc.noSum:
				req.Checksum = ""
			}
			if tc.sizeBytes {
				req.SizeBytes = int64(len(data))
			}
			h.start(req)
			d := waitFinished(t, h.client, req.ID)
			if tc.code == "" {
				assertPublished(t, d, h.pool, data, want)
			} else {
				assertFailed(t, d, h.pool, tc.code, tc.retryable)
				t.Logf("%s: %s", d.Error.Code, d.Error.Message)
			}
			served := h.up.BytesServed(tc.file)
			if tc.maxServed > 0 && float64(served) > tc.maxServed*float64(len(data)) {
				t.Errorf("mirror served %d bytes of a %d-byte file; want at most %.1f×", served, len(data), tc.maxServed)
			}
			if tc.requests > 0 && h.up.Requests(tc.file) != tc.requests {
				t.Errorf("mirror answered %d requests, want %d", h.up.Requests(tc.file), tc.requests)
			}
		})
	}
}
