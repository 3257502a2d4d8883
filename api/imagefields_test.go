package api_test

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/quantix/cloudimages/store"
)

// An image shows what the node found in the published file — format,
// virtual size, compression and both checksums — once it is READY, and
// null or empty before; a url request's declared format reaches the
// workflow, and the compression extension leaves the file name.
func TestImageShowsFormatAndChecksumsOnceReady(t *testing.T) {
	forEachDB(t, func(t *testing.T, dbURL string) {
		e := newEnv(t, dbURL)
		ctx := context.Background()
		pool, node := e.seed("nfs", "127.0.0.1:1")

		var created map[string]any
		r := e.must(http.StatusAccepted, "POST", "/v1/images", map[string]any{"url": "https://a.example/f/FreeBSD.qcow2.xz",
			"checksum": sha, "format": "qcow2", "pool_id": pool}, &created)
		for _, k := range []string{"format", "compression", "source_checksum", "file_checksum"} {
			if v, ok := created[k]; !ok || v != "" {
				t.Errorf("PENDING image: %s = %v (present %v), want \"\": %s", k, v, ok, r.body)
			}
		}
		if v, ok := created["virtual_size_bytes"]; !ok || v != nil {
			t.Errorf("PENDING image: virtual_size_bytes = %v (present %v), want null", v, ok)
		}
		id := created["id"].(string)
		if created["file_name"] != "FreeBSD.qcow2" {
			t.Errorf("file_name %v, want FreeBSD.qcow2 (the image is published decompressed)", created["file_name"])
		}
		if in := workflowInput(t, id); in.Format != "qcow2" || in.URL != "https://a.example/f/FreeBSD.qcow2.xz" {
			t.Errorf("workflow input: %+v, want format qcow2", in)
		}

		fileSum := "sha256:" + strings.Repeat("f", 64)
		if err := e.store.Transition(ctx, id, store.ToReady{NodeID: node, Path: "/pools/x/cloud-images/FreeBSD.qcow2", SizeBytes: 700,
			Checksum: sha, Format: "qcow2", VirtualSizeBytes: 5 << 30, Compression: "xz", FileChecksum: fileSum}); err != nil {
			t.Fatal(err)
		}
		type fields struct {
			Format           string `json:"format"`
			VirtualSizeBytes *int64 `json:"virtual_size_bytes"`
			Compression      string `json:"compression"`
			Checksum         string `json:"checksum"`
			SourceChecksum   string `json:"source_checksum"`
			FileChecksum     string `json:"file_checksum"`
		}
		check := func(what string, got fields) {
			t.Helper()
			if got.Format != "qcow2" || got.VirtualSizeBytes == nil || *got.VirtualSizeBytes != 5<<30 || got.Compression != "xz" ||
				got.Checksum != sha || got.SourceChecksum != sha || got.FileChecksum != fileSum {
				b, _ := json.Marshal(got)
				t.Errorf("%s: %s", what, b)
			}
		}
		var one fields
		e.must(http.StatusOK, "GET", "/v1/images/"+id, nil, &one)
		check("GET image", one)
		var list struct{ Items []fields }
		e.must(http.StatusOK, "GET", "/v1/images?pool_id="+pool, nil, &list)
		if len(list.Items) != 1 {
			t.Fatalf("images in pool: %d, want 1", len(list.Items))
		}
		check("GET images", list.Items[0])

		r = e.do("POST", "/v1/images", map[string]any{"url": "https://a.example/y.img", "checksum": sha, "format": "img", "pool_id": pool})
		if r.status != http.StatusBadRequest || !strings.Contains(string(r.body), "invalid_request") || !strings.Contains(string(r.body), "qcow2, raw, vmdk") {
			t.Errorf("format img: %d %s, want 400 invalid_request naming the formats", r.status, r.body)
		}
	})
}

// An image says what the signature of its checksum file said, as the
// workflow recorded it; until then (and for images from before
// signatures were checked) it is "not_checked", never anything better.
func TestImageShowsItsSignatureStatus(t *testing.T) {
	forEachDB(t, func(t *testing.T, dbURL string) {
		e := newEnv(t, dbURL)
		pool, node := e.seed("nfs", "127.0.0.1:1")
		var created struct {
			ID        string `json:"id"`
			Signature string `json:"signature"`
		}
		e.must(http.StatusAccepted, "POST", "/v1/images", map[string]any{"url": "https://a.example/s.qcow2", "checksum": sha, "pool_id": pool}, &created)
		if created.Signature != "not_checked" {
			t.Errorf("PENDING image: signature %q, want not_checked", created.Signature)
		}
		for _, st := range []string{"verified", "unsigned", "not_checked"} {
			if err := e.store.RecordChecksum(context.Background(), created.ID, sha, false, st); err != nil {
				t.Fatal(err)
			}
			var got struct {
				Signature string `json:"signature"`
			}
			e.must(http.StatusOK, "GET", "/v1/images/"+created.ID, nil, &got)
			if got.Signature != st {
				t.Errorf("recorded %q, the API shows %q", st, got.Signature)
			}
		}
		// READY images are counted by signature, so an operator can watch for not_checked.
		if err := e.store.RecordChecksum(context.Background(), created.ID, sha, false, "verified"); err != nil {
			t.Fatal(err)
		}
		if err := e.store.Transition(context.Background(), created.ID, store.ToReady{NodeID: node, Path: "/pools/x/cloud-images/s.qcow2",
			SizeBytes: 700, Checksum: sha}); err != nil {
			t.Fatal(err)
		}
		m := e.must(http.StatusOK, "GET", "/metrics", nil, nil)
		for _, want := range []string{`cloudimages_ready_images_by_signature{signature="verified"} 1`,
			`cloudimages_ready_images_by_signature{signature="not_checked"} 0`} {
			if !strings.Contains(string(m.body), want) {
				t.Errorf("/metrics lacks %s", want)
			}
		}
	})
}
