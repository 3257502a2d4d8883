package nodeagent_test

import (
	"bytes"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/quantix/cloudimages/fault"
	"github.com/quantix/cloudimages/internal/testenv"
	"github.com/quantix/cloudimages/nodeagent/agentclient"
)

// startUpload creates an upload of data on the agent and fails the test
// unless it is accepted.
func startUpload(t *testing.T, c *agentclient.Client, id string, data []byte, sum string) agentclient.UploadRequest {
	t.Helper()
	req := agentclient.UploadRequest{ID: id, PoolID: "pool-1", FileName: id + ".qcow2", Checksum: sum, SizeBytes: int64(len(data))}
	if _, err := c.StartUpload(ctx(t), req); err != nil {
		t.Fatalf("start upload %s: %v", id, err)
	}
	return req
}

func write(t *testing.T, c *agentclient.Client, id string, offset int64, data []byte) (agentclient.Upload, error) {
	t.Helper()
	return c.WriteUpload(ctx(t), id, offset, bytes.NewReader(data), int64(len(data)))
}

func TestUploadInChunksIsVerifiedAndPublished(t *testing.T) {
	h := newHarness(t, nil)
	data := testenv.QCOW2Image(3<<20, 7)
	sum := testenv.SHA256(data)
	startUpload(t, h.client, "up-1", data, sum)
	if h, err := h.client.Health(ctx(t)); err != nil || !h.Supports(agentclient.FeatureUpload) {
		t.Fatalf("health %v (%v): want the upload feature", h.Features, err)
	}
	var off int64
	for off < int64(len(data)) {
		end := min(off+1<<20+123, int64(len(data)))
		u, err := write(t, h.client, "up-1", off, data[off:end])
		if err != nil {
			t.Fatalf("PATCH at %d: %v", off, err)
		}
		if u.Offset != end {
			t.Fatalf("offset after PATCH %d, want %d", u.Offset, end)
		}
		off = end
	}
	d := waitFinished(t, h.client, "up-1")
	assertPublished(t, d, h.pool, data, sum)
	if d.Format != "qcow2" || d.FileChecksum != sum {
		t.Errorf("format %q file checksum %q, want qcow2 and %s", d.Format, d.FileChecksum, sum)
	}
}

func TestUploadWithoutChecksumRecordsTheComputedOne(t *testing.T) {
	h := newHarness(t, nil)
	data := testenv.QCOW2Image(1<<20, 8)
	startUpload(t, h.client, "up-2", data, "")
	if _, err := write(t, h.client, "up-2", 0, data); err != nil {
		t.Fatal(err)
	}
	assertPublished(t, waitFinished(t, h.client, "up-2"), h.pool, data, testenv.SHA256(data))
}

func TestUploadOffsetMismatchIsAConflict(t *testing.T) {
	h := newHarness(t, nil)
	data := testenv.QCOW2Image(1<<20, 9)
	startUpload(t, h.client, "up-3", data, testenv.SHA256(data))
	if _, err := write(t, h.client, "up-3", 0, data[:1000]); err != nil {
		t.Fatal(err)
	}
	for _, off := range []int64{0, 999, 1001} {
		_, err := write(t, h.client, "up-3", off, data[off:off+10])
		if faultCode(err) != fault.Conflict {
			t.Errorf("PATCH at %d of an upload at 1000: %v, want conflict", off, err)
		}
	}
	u, err := h.client.Upload(ctx(t), "up-3")
	if err != nil || u.Offset != 1000 || u.State != agentclient.StateRunning {
		t.Fatalf("upload after refused PATCHes: %+v %v; want running at 1000", u, err)
	}
	if _, err := write(t, h.client, "up-3", 1000, data[1000:]); err != nil {
		t.Fatal(err)
	}
	assertPublished(t, waitFinished(t, h.client, "up-3"), h.pool, data, testenv.SHA256(data))
}

func TestUploadFaults(t *testing.T) {
	image := testenv.QCOW2Image(1<<20, 10)
	page := []byte("<!DOCTYPE html><html><body>" + strings.Repeat("not an image ", 100) + "</body></html>")
	tests := []struct {
		name     string
		data     []byte // what is declared
		sent     []byte // what is sent
		sum      string
		chunked  bool
		code     string
		patchErr bool // the PATCH itself is refused with the code
	}{
		{name: "wrong checksum", data: image, sent: image, sum: testenv.SHA256([]byte("other")), code: fault.ChecksumMismatch},
		{name: "larger than declared", data: image[:1000], sent: image[:2000], code: fault.TooLarge, patchErr: true},
		{name: "larger than declared, chunked", data: image[:1000], sent: image[:700<<10], chunked: true, code: fault.TooLarge, patchErr: true},
		{name: "web page", data: page, sent: page, code: fault.NotADiskImage, patchErr: true},
		{name: "archive", data: testenv.TarOf("disk.qcow2", image), sent: testenv.TarOf("disk.qcow2", image), code: fault.NotADiskImage},
	}
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, nil)
			id := "bad-" + strconv.Itoa(i)
			req := agentclient.UploadRequest{ID: id, PoolID: "pool-1", FileName: id + ".img", Checksum: tc.sum, SizeBytes: int64(len(tc.data))}
			if _, err := h.client.StartUpload(ctx(t), req); err != nil {
				t.Fatal(err)
			}
			var body io.Reader = bytes.NewReader(tc.sent)
			size := int64(len(tc.sent))
			if tc.chunked {
				body, size = io.MultiReader(body), -1 // no length: the agent finds out while it reads
			}
			_, err := h.client.WriteUpload(ctx(t), id, 0, body, size)
			if tc.patchErr && faultCode(err) != tc.code {
				t.Fatalf("PATCH: %v, want %s", err, tc.code)
			}
			if !tc.patchErr && err != nil {
				t.Fatalf("PATCH: %v", err)
			}
			assertFailed(t, waitFinished(t, h.client, id), h.pool, tc.code, false)
		})
	}
}

func TestUploadCancelRemovesPartialData(t *testing.T) {
	h := newHarness(t, nil)
	data := testenv.QCOW2Image(1<<20, 11)
	startUpload(t, h.client, "up-4", data, "")
	if _, err := write(t, h.client, "up-4", 0, data[:4096]); err != nil {
		t.Fatal(err)
	}
	parts, _ := filepath.Glob(filepath.Join(h.pool, agentclient.ImagesDir, ".downloads", "up-4~*.part"))
	if len(parts) != 1 {
		t.Fatalf("partial files before cancel: %v", parts)
	}
	if err := h.client.CancelDownload(ctx(t), "up-4"); err != nil {
		t.Fatal(err)
	}
	d := waitFinished(t, h.client, "up-4")
	if d.State != agentclient.StateCancelled {
		t.Fatalf("state %s, want cancelled", d.State)
	}
	assertNoPartial(t, h.pool, "up-4")
	if _, err := write(t, h.client, "up-4", 4096, data[4096:]); faultCode(err) != fault.Conflict {
		t.Fatalf("PATCH of a cancelled upload: %v, want conflict", err)
	}
}

func TestUploadRequestsAreChecked(t *testing.T) {
	h := newHarness(t, nil)
	good := agentclient.UploadRequest{ID: "u", PoolID: "pool-1", FileName: "u.qcow2", SizeBytes: 10}
	tests := []struct {
		name   string
		change func(*agentclient.UploadRequest)
		code   string
	}{
		{"no size", func(r *agentclient.UploadRequest) { r.SizeBytes = 0 }, fault.InvalidRequest},
		{"bad file name", func(r *agentclient.UploadRequest) { r.FileName = "../x" }, fault.InvalidRequest},
		{"bad checksum", func(r *agentclient.UploadRequest) { r.Checksum = "md5:00" }, fault.InvalidRequest},
		{"unknown pool", func(r *agentclient.UploadRequest) { r.PoolID = "nope" }, fault.PoolNotFound},
		{"past max image size", func(r *agentclient.UploadRequest) { r.SizeBytes = 1 << 50 }, fault.TooLarge},
	}
	for _, tc := range tests {
		req := good
		tc.change(&req)
		if _, err := h.client.StartUpload(ctx(t), req); faultCode(err) != tc.code {
			t.Errorf("%s: %v, want %s", tc.name, err, tc.code)
		}
	}
	if _, err := h.client.StartUpload(ctx(t), good); err != nil {
		t.Fatal(err)
	}
	if _, err := h.client.StartUpload(ctx(t), good); err != nil {
		t.Errorf("the same upload again: %v, want it found", err)
	}
	other := good
	other.SizeBytes = 11
	if _, err := h.client.StartUpload(ctx(t), other); faultCode(err) != fault.Conflict {
		t.Errorf("another upload under the same id: %v, want conflict", err)
	}
	// A PATCH needs the upload's media type.
	code, body := rawPatch(t, h.http.URL+"/v1/uploads/u", testToken, "text/plain", "0", "x")
	if code != http.StatusUnsupportedMediaType {
		t.Errorf("PATCH as text/plain: %d %s, want 415", code, body)
	}
	// A token scoped to another upload opens nothing here.
	if code, _ := rawPatch(t, h.http.URL+"/v1/uploads/u", "", "application/offset+octet-stream", "0", "x"); code != http.StatusUnauthorized {
		t.Errorf("PATCH without a token: %d, want 401", code)
	}
}

func rawPatch(t *testing.T, url, token, contentType, offset, body string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPatch, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", contentType)
	req.Header.Set("Upload-Offset", offset)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// TestKilledAgentResumesUploadFromItsOffset: the agent process gets
// SIGKILL after acknowledging part of an upload; started again, it
// answers with the offset it acknowledged and takes the rest from there.
func TestKilledAgentResumesUploadFromItsOffset(t *testing.T) {
	agent := testenv.StartAgent(t, testenv.AgentOptions{})
	c := agent.Client()
	data := testenv.QCOW2Image(3<<20, 12)
	sum := testenv.SHA256(data)
	startUpload(t, c, "crash-up", data, sum)
	half := int64(len(data) / 2)
	if u, err := write(t, c, "crash-up", 0, data[:half]); err != nil || u.Offset != half {
		t.Fatalf("first half: %+v %v", u, err)
	}
	agent.Kill()
	agent.Restart()
	u, err := c.Upload(ctx(t), "crash-up")
	if err != nil || u.Offset != half || u.State != agentclient.StateRunning {
		t.Fatalf("after the restart: %+v %v; want running at %d", u, err, half)
	}
	if _, err := write(t, c, "crash-up", half, data[half:]); err != nil {
		t.Fatal(err)
	}
	d := waitFinished(t, c, "crash-up")
	assertPublished(t, d, agent.PoolDir("pool-1"), data, sum)
	if _, err := os.Stat(d.Path); err != nil {
		t.Fatal(err)
	}
	// Known after another restart as finished: more bytes are refused.
	agent.Restart()
	if _, err := write(t, c, "crash-up", int64(len(data)), []byte("more")); faultCode(err) != fault.Conflict {
		t.Fatalf("PATCH of a finished upload after a restart: %v, want conflict", err)
	}
}

// TestUploadIsConvertedForItsPool: an upload into a pool that wants raw
// images is verified, then converted with qemu-img, and the raw file is
// published with the upload's checksum and its own.
func TestUploadIsConvertedForItsPool(t *testing.T) {
	realQemuImg(t)
	raw := rawDisk(t)
	src := filepath.Join(t.TempDir(), "disk.qcow2")
	runQemuImg(t, "convert", "-f", "raw", "-O", "qcow2", raw, src)
	data := readFile(t, src)
	h := newHarness(t, nil)
	req := agentclient.UploadRequest{ID: "conv", PoolID: "pool-1", FileName: "conv.raw", Checksum: testenv.SHA256(data),
		SizeBytes: int64(len(data)), ConvertTo: "raw"}
	if _, err := h.client.StartUpload(ctx(t), req); err != nil {
		t.Fatal(err)
	}
	if _, err := write(t, h.client, "conv", 0, data); err != nil {
		t.Fatal(err)
	}
	d := waitFinished(t, h.client, "conv")
	if d.State != agentclient.StateCompleted || d.Format != "raw" {
		t.Fatalf("state %s format %q error %+v; want completed raw", d.State, d.Format, d.Error)
	}
	got := readFile(t, d.Path)
	if d.Checksum != testenv.SHA256(data) || d.FileChecksum != testenv.SHA256(got) || int64(len(got)) != 64<<20 {
		t.Errorf("checksum %s file checksum %s size %d; want the upload's, the raw file's and 64 MiB", d.Checksum, d.FileChecksum, len(got))
	}
	assertNoWorkFiles(t, h.pool)
}
