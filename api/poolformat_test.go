package api_test

import (
	"context"
	"net/http"
	"strings"
	"testing"

	"github.com/quantix/cloudimages/store"
)

func TestPoolImageFormatIsKeptShownAndChecked(t *testing.T) {
	forEachDB(t, func(t *testing.T, dbURL string) {
		e := newEnv(t, dbURL)
		pool, node := e.seed("local", "127.0.0.1:1")
		var p struct {
			ID          string  `json:"id"`
			ImageFormat *string `json:"image_format"`
		}
		e.must(http.StatusCreated, "POST", "/v1/pools", map[string]any{"id": "rawpool", "type": "local", "image_format": "raw", "node_ids": []string{node}}, &p)
		if p.ImageFormat == nil || *p.ImageFormat != "raw" {
			t.Fatalf("created pool shows image_format %v, want raw", p.ImageFormat)
		}
		e.must(http.StatusCreated, "POST", "/v1/pools", map[string]any{"id": "qpool", "type": "nfs", "image_format": "qcow2"}, nil)
		for id, want := range map[string]string{"rawpool": "raw", "qpool": "qcow2", pool: ""} {
			p.ImageFormat = nil
			e.must(http.StatusOK, "GET", "/v1/pools/"+id, nil, &p)
			if p.ImageFormat == nil || *p.ImageFormat != want {
				t.Errorf("GET pool %s: image_format %v, want %q (always shown)", id, p.ImageFormat, want)
			}
		}
		for _, bad := range []string{"vmdk", "RAW", "iso"} {
			r := e.do("POST", "/v1/pools", map[string]any{"id": "bad", "type": "local", "image_format": bad})
			if r.status != http.StatusBadRequest || r.errCode(t) != "invalid_request" || !strings.Contains(string(r.body), `\"qcow2\"`) {
				t.Errorf("image_format %q: %d %s, want 400 invalid_request naming raw and qcow2", bad, r.status, r.body)
			}
		}
		e.must(http.StatusNotFound, "GET", "/v1/pools/bad", nil, nil)

		// An image for a raw pool is named as it will be published: raw.
		var img struct {
			FileName string `json:"file_name"`
		}
		e.must(http.StatusAccepted, "POST", "/v1/images", map[string]any{"url": "https://a.example/f/vendor.qcow2.xz",
			"checksum": "sha256:" + strings.Repeat("ab", 32), "pool_id": "rawpool"}, &img)
		if img.FileName != "vendor.raw" {
			t.Errorf("file_name in a raw pool = %q, want vendor.raw", img.FileName)
		}

		// The status filter knows CONVERTING.
		ctx := context.Background()
		if _, _, err := e.store.CreateImage(ctx, &store.Image{ID: "conv", SourceKey: "k", PoolID: "rawpool", FileName: "f.raw"}); err != nil {
			t.Fatal(err)
		}
		for _, tr := range []store.Transition{store.ToDownloading{NodeID: node, Attempt: 1}, store.ToVerifying{NodeID: node}, store.ToConverting{NodeID: node}} {
			if err := e.store.Transition(ctx, "conv", tr); err != nil {
				t.Fatal(err)
			}
		}
		var page imagePage
		e.must(http.StatusOK, "GET", "/v1/images?status=converting", nil, &page)
		if len(page.Items) != 1 || page.Items[0].ID != "conv" || page.Items[0].Status != "CONVERTING" {
			t.Fatalf("images with status CONVERTING: %+v, want conv", page.Items)
		}
	})
}
