package api_test

import (
	"context"
	"encoding/base64"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/quantix/cloudimages/store"
)

type imagePage struct {
	Items         []image `json:"items"`
	NextPageToken string  `json:"next_page_token"`
}

// Paging through GET /v1/images shows every image once, newest first and
// by id among those created at the same moment, and an image added while
// paging does not shift the pages.
func TestImagesPageThroughEveryImageOnce(t *testing.T) {
	forEachDB(t, func(t *testing.T, dbURL string) {
		e := newEnv(t, dbURL)
		pool, _ := e.seed("nfs", "127.0.0.1:1")
		ctx := context.Background()
		at := time.Date(2026, 5, 6, 7, 8, 9, 987654000, time.UTC)
		var want []string
		for i := 7; i >= 0; i-- { // img-7 is the newest; img-0..img-2 share a moment
			id := fmt.Sprintf("img-%d-%s", i, pool)
			created := at
			if i >= 3 {
				created = at.Add(time.Duration(i) * time.Minute)
			}
			if _, _, err := e.store.CreateImage(ctx, &store.Image{ID: id, SourceKey: id, PoolID: pool, FileName: id, CreatedAt: created}); err != nil {
				t.Fatal(err)
			}
			if i >= 3 {
				want = append(want, id)
			}
		}
		want = append(want, "img-0-"+pool, "img-1-"+pool, "img-2-"+pool)

		var got []string
		token, pages := "", 0
		for {
			q := url.Values{"pool_id": {pool}, "limit": {"3"}}
			if token != "" {
				q.Set("page_token", token)
			}
			var page imagePage
			e.must(http.StatusOK, "GET", "/v1/images?"+q.Encode(), nil, &page)
			pages++
			for _, img := range page.Items {
				got = append(got, img.ID)
			}
			if pages == 1 { // a newer image arrives while the client pages
				id := "late-" + pool
				if _, _, err := e.store.CreateImage(ctx, &store.Image{ID: id, SourceKey: id, PoolID: pool, FileName: id}); err != nil {
					t.Fatal(err)
				}
			}
			if page.NextPageToken == "" {
				break
			}
			if len(page.Items) != 3 || pages > 5 {
				t.Fatalf("page %d has %d items and a next page", pages, len(page.Items))
			}
			token = page.NextPageToken
		}
		if strings.Join(got, ",") != strings.Join(want, ",") || pages != 3 {
			t.Fatalf("paged through %d pages: %v, want %v", pages, got, want)
		}

		// Without a limit the default page holds all of them, and is the last.
		var all imagePage
		r := e.must(http.StatusOK, "GET", "/v1/images?pool_id="+pool, nil, &all)
		if len(all.Items) != 9 || all.NextPageToken != "" || strings.Contains(string(r.body), "next_page_token") {
			t.Fatalf("default page: %d items, next %q", len(all.Items), all.NextPageToken)
		}
	})
}

func TestImagesBadLimitOrPageTokenIsInvalidRequest(t *testing.T) {
	e := newEnv(t, testenvSQLite(t))
	for _, q := range []string{"limit=0", "limit=-1", "limit=1001", "limit=ten", "limit=2.5",
		"page_token=nonsense!", "page_token=" + base64.RawURLEncoding.EncodeToString([]byte(`{"id":"x"}`)),
		"page_token=" + base64.RawURLEncoding.EncodeToString([]byte(`[1,2]`))} {
		r := e.do("GET", "/v1/images?"+q, nil)
		if r.status != http.StatusBadRequest || r.errCode(t) != "invalid_request" {
			t.Errorf("%s: %d %s, want 400 invalid_request", q, r.status, r.body)
			continue
		}
		if name := strings.SplitN(q, "=", 2)[0]; !strings.Contains(string(r.body), name) {
			t.Errorf("%s: %s does not name the parameter", q, r.body)
		}
	}
	e.must(http.StatusOK, "GET", "/v1/images?limit=1000", nil, nil)
}
