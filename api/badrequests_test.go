package api_test

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/quantix/cloudimages/store"
)

func TestBadRequestsAreClearErrors(t *testing.T) {
	forEachDB(t, func(t *testing.T, dbURL string) {
		e := newEnv(t, dbURL)
		ctx := context.Background()
		pool, node := e.seed("nfs", "127.0.0.1:1")
		e.must(http.StatusCreated, "POST", "/v1/nodes", map[string]any{"id": "n-off", "address": "127.0.0.1:2"}, nil)
		if err := e.store.RecordNodeHealth(ctx, "n-off", store.NodeHealth{Online: false, At: time.Now()}); err != nil {
			t.Fatal(err)
		}
		e.must(http.StatusCreated, "POST", "/v1/pools", map[string]any{"id": "dead", "type": "local", "node_ids": []string{"n-off"}}, nil)
		e.must(http.StatusCreated, "POST", "/v1/pools", map[string]any{"id": "empty", "type": "local"}, nil)
		e.must(http.StatusAccepted, "POST", "/v1/images", map[string]any{"url": "https://a.example/dup.qcow2", "checksum": sha, "pool_id": pool}, nil)
		// A download running on the node.
		busy := &store.Image{ID: "busy", SourceKey: "busy", PoolID: pool, FileName: "busy.img"}
		if _, _, err := e.store.CreateImage(ctx, busy); err != nil {
			t.Fatal(err)
		}
		if err := e.store.Transition(ctx, "busy", store.ToDownloading{NodeID: node, Attempt: 1}); err != nil {
			t.Fatal(err)
		}

		img := func(fields string) string { return `{"pool_id": "` + pool + `", ` + fields + `}` }
		cases := []struct {
			name        string
			method      string
			path        string
			body        string
			contentType string
			status      int
			code        string
			mentions    string // the message must mention this
		}{
			{"not JSON", "POST", "/v1/images", `catalog_id=x`, "", 400, "invalid_request", "JSON"},
			{"empty body", "POST", "/v1/images", ``, "", 400, "invalid_request", "empty"},
			{"unknown field", "POST", "/v1/images", img(`"catalog_id": "cirros-0.6.3", "extra": 1`), "", 400, "invalid_request", "extra"},
			{"array body", "POST", "/v1/images", `[1, 2]`, "", 400, "invalid_request", "object"},
			{"two objects", "POST", "/v1/images", `{"pool_id": "x"} {}`, "", 400, "invalid_request", "one JSON object"},
			{"wrong type", "POST", "/v1/images", `{"pool_id": 5}`, "", 400, "invalid_request", "pool_id"},
			{"neither catalog nor url", "POST", "/v1/images", img(`"name": "x"`), "", 400, "invalid_request", "catalog_id"},
			{"both catalog and url", "POST", "/v1/images", img(`"catalog_id": "cirros-0.6.3", "url": "https://a.example/x.img", "checksum": "` + sha + `"`), "", 400, "invalid_request", "not both"},
			{"no pool", "POST", "/v1/images", `{"catalog_id": "cirros-0.6.3"}`, "", 400, "invalid_request", "pool_id"},
			{"unknown pool", "POST", "/v1/images", `{"catalog_id": "cirros-0.6.3", "pool_id": "nope"}`, "", 404, "pool_not_found", pool},
			{"unknown catalog entry", "POST", "/v1/images", img(`"catalog_id": "nope"`), "", 404, "catalog_entry_not_found", "cirros-0.6.3"},
			{"ftp url", "POST", "/v1/images", img(`"url": "ftp://a.example/x.img", "checksum": "` + sha + `"`), "", 422, "url_forbidden", "http"},
			{"file url", "POST", "/v1/images", img(`"url": "file:///etc/passwd", "checksum": "` + sha + `"`), "", 422, "url_forbidden", "https"},
			{"url without host", "POST", "/v1/images", img(`"url": "https:///x.img", "checksum": "` + sha + `"`), "", 400, "invalid_request", "host"},
			{"url with password", "POST", "/v1/images", img(`"url": "https://u:secret@a.example/x.img", "checksum": "` + sha + `"`), "", 400, "invalid_request", "password"},
			{"url without checksum", "POST", "/v1/images", img(`"url": "https://a.example/x.img"`), "", 400, "invalid_request", "allow_unverified"},
			{"bandwidth cap too small", "POST", "/v1/images", img(`"catalog_id": "cirros-0.6.3", "max_bytes_per_second": 100`), "", 400, "invalid_request", "max_bytes_per_second"},
			{"url without file name", "POST", "/v1/images", img(`"url": "https://a.example/", "checksum": "` + sha + `"`), "", 400, "invalid_request", "name"},
			{"md5 checksum", "POST", "/v1/images", img(`"url": "https://a.example/x.img", "checksum": "md5:d41d8cd98f00b204e9800998ecf8427e"`), "", 400, "invalid_request", "sha256"},
			{"short sha256", "POST", "/v1/images", img(`"url": "https://a.example/x.img", "checksum": "sha256:abcd"`), "", 400, "invalid_request", "64"},
			{"checksum not hex", "POST", "/v1/images", img(`"url": "https://a.example/x.img", "checksum": "sha256:` + strings.Repeat("zz", 32) + `"`), "", 400, "invalid_request", "hex"},
			{"name with ..", "POST", "/v1/images", img(`"url": "https://a.example/x.img", "name": "../etc", "checksum": "` + sha + `"`), "", 400, "invalid_request", "'/'"},
			{"name with slash", "POST", "/v1/images", img(`"url": "https://a.example/x.img", "name": "a/b", "checksum": "` + sha + `"`), "", 400, "invalid_request", "'/'"},
			{"node not in pool", "POST", "/v1/images", img(`"catalog_id": "cirros-0.6.3", "node_id": "n-off"`), "", 422, "unprocessable", node},
			{"pool without nodes", "POST", "/v1/images", `{"catalog_id": "cirros-0.6.3", "pool_id": "empty"}`, "", 422, "no_node_available", "no nodes"},
			{"file name taken", "POST", "/v1/images", img(`"url": "https://b.example/dup.qcow2", "checksum": "` + sha + `"`), "", 409, "conflict", "dup.qcow2"},
			{"text content type", "POST", "/v1/images", img(`"catalog_id": "cirros-0.6.3"`), "text/plain", 415, "unsupported_media_type", "application/json"},
			{"body too large", "POST", "/v1/images", `{"name": "` + strings.Repeat("x", 2<<20) + `"}`, "", 413, "payload_too_large", "larger"},
			{"bad status filter", "GET", "/v1/images?status=BOGUS", "", "", 400, "invalid_request", "READY"},
			{"unknown pool filter", "GET", "/v1/images?pool_id=nope", "", "", 404, "pool_not_found", pool},
			{"unknown image", "GET", "/v1/images/nope", "", "", 404, "not_found", "nope"},
			{"unknown image events", "GET", "/v1/images/nope/events", "", "", 404, "not_found", "nope"},
			{"delete unknown image", "DELETE", "/v1/images/nope", "", "", 404, "not_found", "nope"},
			{"unknown route", "GET", "/v1/nope", "", "", 404, "not_found", "openapi"},
			{"wrong method", "DELETE", "/v1/catalog", "", "", 405, "method_not_allowed", "method"},
			{"unknown UI page", "GET", "/nope.html", "", "", 404, "not_found", "/v1/"},
			{"node without address", "POST", "/v1/nodes", `{"id": "n9"}`, "", 400, "invalid_request", "address"},
			{"node address without port", "POST", "/v1/nodes", `{"address": "nohost"}`, "", 400, "invalid_request", "host:port"},
			{"node port out of range", "POST", "/v1/nodes", `{"address": "h:99999"}`, "", 400, "invalid_request", "65535"},
			{"node id with slash", "POST", "/v1/nodes", `{"id": "a/b", "address": "h:1"}`, "", 400, "invalid_request", "letters"},
			{"node name with control char", "POST", "/v1/nodes", `{"name": "a\u0007", "address": "h:1"}`, "", 400, "invalid_request", "control"},
			{"node id taken", "POST", "/v1/nodes", `{"id": "n-off", "address": "h:1"}`, "", 409, "conflict", "n-off"},
			{"unknown node", "GET", "/v1/nodes/nope", "", "", 404, "not_found", "nope"},
			{"delete busy node", "DELETE", "/v1/nodes/" + node, "", "", 409, "conflict", "busy"},
			{"pool type unknown", "POST", "/v1/pools", `{"id": "p9", "type": "ceph"}`, "", 400, "invalid_request", "nfs"},
			{"pool type missing", "POST", "/v1/pools", `{"id": "p9"}`, "", 400, "invalid_request", "type"},
			{"pool id missing", "POST", "/v1/pools", `{"type": "nfs"}`, "", 400, "invalid_request", "id"},
			{"pool with unknown node", "POST", "/v1/pools", `{"id": "p9", "type": "nfs", "node_ids": ["ghost"]}`, "", 404, "not_found", "ghost"},
			{"pool node listed twice", "POST", "/v1/pools", `{"id": "p9", "type": "nfs", "node_ids": ["n-off", "n-off"]}`, "", 400, "invalid_request", "twice"},
			{"shared local pool", "POST", "/v1/pools", `{"id": "p9", "type": "local", "shared": true}`, "", 400, "invalid_request", "shared"},
			{"pool id taken", "POST", "/v1/pools", `{"id": "dead", "type": "local"}`, "", 409, "conflict", "dead"},
			{"delete unknown pool", "DELETE", "/v1/pools/nope", "", "", 404, "pool_not_found", "nope"},
			{"delete pool with live images", "DELETE", "/v1/pools/" + pool, "", "", 409, "conflict", "DELETE /v1/images"},
			{"unknown catalog entry by id", "GET", "/v1/catalog/nope", "", "", 404, "catalog_entry_not_found", "cirros"},
		}
		if len(cases) < 30 {
			t.Fatalf("only %d cases", len(cases))
		}
		for _, c := range cases {
			t.Run(c.name, func(t *testing.T) {
				var body any
				if c.body != "" || c.method == "POST" {
					body = c.body
				}
				r := e.do(c.method, c.path, body, "Content-Type", c.contentType)
				if c.contentType == "" && body != nil {
					r = e.do(c.method, c.path, body)
				}
				if r.status != c.status {
					t.Fatalf("status %d, want %d: %.300s", r.status, c.status, r.body)
				}
				if code := r.errCode(t); code != c.code {
					t.Fatalf("code %q, want %q: %.300s", code, c.code, r.body)
				}
				if !strings.Contains(string(r.body), c.mentions) {
					t.Errorf("message does not mention %q: %.300s", c.mentions, r.body)
				}
			})
		}
		// Nothing was created by any of them.
		imgs, err := e.store.Images(ctx, store.ImageFilter{})
		if err != nil || len(imgs) != 2 {
			t.Errorf("images after the bad requests: %d (%v), want the 2 of the setup", len(imgs), err)
		}
	})
}
