package nodeagent_test

import (
	"strings"
	"testing"
	"time"

	"github.com/quantix/cloudimages/fault"
	"github.com/quantix/cloudimages/internal/testenv"
	"github.com/quantix/cloudimages/nodeagent"
	"github.com/quantix/cloudimages/nodeagent/agentclient"
)

// servedSum adds up the bytes a download says each mirror served.
func servedSum(d agentclient.Download) int64 {
	var n int64
	for _, m := range d.Mirrors {
		n += m.Bytes
	}
	return n
}

func TestMirrorListFirstNotFoundSecondServesAll(t *testing.T) {
	h := newHarness(t, nil)
	second := testenv.NewUpstream(t)
	data := testenv.QCOW2Image(2<<20, 1)
	url2 := second.AddFile("m.qcow2", data)
	url1 := h.up.FileURL("m.qcow2") // not there: 404
	h.start(agentclient.DownloadRequest{ID: "m", URL: url1, Mirrors: []string{url2}, FileName: "m.qcow2", Checksum: testenv.SHA256(data)})
	d := waitFinished(t, h.client, "m")
	assertPublished(t, d, h.pool, data, testenv.SHA256(data))
	if len(d.Mirrors) != 2 || d.Mirrors[0].URL != url1 || d.Mirrors[0].Bytes != 0 || d.Mirrors[1].URL != url2 || d.Mirrors[1].Bytes != int64(len(data)) {
		t.Fatalf("mirrors %+v; want %s: 0, %s: %d", d.Mirrors, url1, url2, len(data))
	}
	if _, body := rawRequest(t, "GET", h.http.URL+"/metrics", testToken, ""); !strings.Contains(body, "cloudimages_nodeagent_mirror_switches_total 1") {
		t.Errorf("metrics do not count the move to the second mirror")
	}
}

// TestMirrorListResumesOnTheNextMirror: a mirror that drops the connection
// or stalls mid-body hands over to the next, which resumes the partial
// data (the validators agree): the bytes each served add up to the file,
// and the second served only the rest.
func TestMirrorListResumesOnTheNextMirror(t *testing.T) {
	for _, tc := range []struct {
		name  string
		fault testenv.Fault
	}{
		{"drop", testenv.Fault{DropAfterBytes: 3 << 20}},
		{"stall", testenv.Fault{StallAfterBytes: 3 << 20}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, func(c *nodeagent.Config) { c.StallTimeout = time.Second })
			second := testenv.NewUpstream(t)
			data := testenv.QCOW2Image(8<<20, 2)
			url1 := h.up.AddFile("r.qcow2", data)
			h.up.SetFault("r.qcow2", tc.fault)
			url2 := second.AddFile("r.qcow2", data)
			h.start(agentclient.DownloadRequest{ID: "r", URL: url1, Mirrors: []string{url2}, FileName: "r.qcow2", Checksum: testenv.SHA256(data)})
			d := waitFinished(t, h.client, "r")
			assertPublished(t, d, h.pool, data, testenv.SHA256(data))
			if len(d.Mirrors) != 2 || servedSum(d) != int64(len(data)) {
				t.Fatalf("mirrors %+v: want two adding up to %d", d.Mirrors, len(data))
			}
			if d.Mirrors[0].Bytes < 1<<20 || d.Mirrors[0].Bytes > 3<<20 {
				t.Errorf("first mirror counted %d bytes; it sent 3 MiB before it failed", d.Mirrors[0].Bytes)
			}
			// The second mirror was asked for the rest only: what it sent,
			// with what the first kept, is the file and no more.
			if got := second.BytesServed("r.qcow2") + d.Mirrors[0].Bytes; got != int64(len(data)) {
				t.Errorf("second mirror sent %d bytes, the first kept %d: %d in all, want %d (a resume, not a restart)",
					second.BytesServed("r.qcow2"), d.Mirrors[0].Bytes, got, len(data))
			}
		})
	}
}

// TestMirrorWithOtherValidatorsRestartsTheBytes: the next mirror's ETag
// and Last-Modified differ from the first's, so its bytes may be of
// another build: the download starts again from zero there, never
// splicing the two.
func TestMirrorWithOtherValidatorsRestartsTheBytes(t *testing.T) {
	h := newHarness(t, nil)
	second := testenv.NewUpstream(t)
	data := testenv.QCOW2Image(6<<20, 3)
	url1 := h.up.AddFile("v.qcow2", data)
	h.up.SetFault("v.qcow2", testenv.Fault{DropAfterBytes: 2 << 20})
	url2 := second.AddFile("v.qcow2", data)
	second.SetFault("v.qcow2", testenv.Fault{ETag: `"another-build"`})
	h.start(agentclient.DownloadRequest{ID: "v", URL: url1, Mirrors: []string{url2}, FileName: "v.qcow2", Checksum: testenv.SHA256(data)})
	d := waitFinished(t, h.client, "v")
	assertPublished(t, d, h.pool, data, testenv.SHA256(data))
	if d.Mirrors[0].Bytes != 0 || d.Mirrors[1].Bytes != int64(len(data)) {
		t.Fatalf("mirrors %+v: want the first's bytes dropped and the second serving all %d", d.Mirrors, len(data))
	}
	if got := second.BytesServed("v.qcow2"); got != int64(len(data)) {
		t.Errorf("second mirror sent %d bytes; want the whole file, %d", got, len(data))
	}
}

func TestAllMirrorsFailingNamesEachOne(t *testing.T) {
	t.Run("not found everywhere", func(t *testing.T) {
		h := newHarness(t, nil)
		second := testenv.NewUpstream(t)
		url1, url2 := h.up.FileURL("gone.qcow2"), second.FileURL("gone.qcow2")
		h.start(agentclient.DownloadRequest{ID: "g", URL: url1, Mirrors: []string{url2}, FileName: "g.qcow2", Checksum: testenv.SHA256([]byte("x"))})
		d := waitFinished(t, h.client, "g")
		assertFailed(t, d, h.pool, fault.UpstreamNotFound, false)
		for _, u := range []string{url1, url2} {
			if !strings.Contains(d.Error.Message, u) {
				t.Errorf("message %q does not name mirror %s", d.Error.Message, u)
			}
		}
	})
	t.Run("not found and a server error", func(t *testing.T) {
		h := newHarness(t, nil)
		second := testenv.NewUpstream(t)
		data := testenv.QCOW2Image(1<<20, 4)
		url2 := second.AddFile("e.qcow2", data)
		second.SetFault("e.qcow2", testenv.Fault{Status: []int{503, 503, 503, 503, 503, 503}})
		url1 := h.up.FileURL("e.qcow2")
		h.start(agentclient.DownloadRequest{ID: "e", URL: url1, Mirrors: []string{url2}, FileName: "e.qcow2", Checksum: testenv.SHA256(data)})
		d := waitFinished(t, h.client, "e")
		// Retryable: a later try, or another node, may get through.
		assertFailed(t, d, h.pool, fault.UpstreamError, true)
		for _, want := range []string{url1, url2, "404", "503", "all 2 mirrors failed"} {
			if !strings.Contains(d.Error.Message, want) {
				t.Errorf("message %q does not say %q", d.Error.Message, want)
			}
		}
		if n := second.Requests("e.qcow2"); n != 3 {
			t.Errorf("second mirror asked %d times; want once per round, 3 rounds (MaxAttempts)", n)
		}
	})
}

func TestMirrorListIsValidated(t *testing.T) {
	h := newHarness(t, func(c *nodeagent.Config) { c.AllowPrivateNetworks = false })
	for _, mirrors := range [][]string{{""}, {"ftp://example.com/x.qcow2"}, {"http://10.0.0.1/x.qcow2"}, {"https://user:pw@example.com/x.qcow2"}} {
		_, err := h.client.StartDownload(ctx(t), agentclient.DownloadRequest{ID: "bad", URL: "https://example.com/x.qcow2", Mirrors: mirrors,
			PoolID: "pool-1", FileName: "x.qcow2"})
		if code := faultCode(err); code != fault.InvalidRequest && code != fault.URLForbidden {
			t.Errorf("mirrors %q: %v; want invalid_request or url_forbidden", mirrors, err)
		} else if !strings.Contains(err.Error(), "mirrors[0]") {
			t.Errorf("mirrors %q: %v does not say which mirror", mirrors, err)
		}
	}
}
