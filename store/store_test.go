package store_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/quantix/cloudimages/internal/testenv"
	"github.com/quantix/cloudimages/store"
)

func open(t *testing.T, url string) *store.Store {
	t.Helper()
	s, err := store.Open(context.Background(), url)
	if err != nil {
		t.Fatalf("open %s: %v", url, err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// seed adds node-1 and a pool p1 assigned to it.
func seed(t *testing.T, s *store.Store) {
	t.Helper()
	ctx := context.Background()
	if err := s.CreateNode(ctx, &store.Node{ID: "node-1", Address: "127.0.0.1:9090"}); err != nil {
		t.Fatal(err)
	}
	if err := s.CreatePool(ctx, &store.Pool{ID: "p1", Type: "local"}, []string{"node-1"}); err != nil {
		t.Fatal(err)
	}
}

func TestOneLiveImagePerSourceUnder50ConcurrentInserts(t *testing.T) {
	for _, db := range testenv.Databases(t) {
		t.Run(db.Name, func(t *testing.T) {
			s := open(t, db.URL)
			seed(t, s)
			ctx := context.Background()
			var wg sync.WaitGroup
			var mu sync.Mutex
			created, ids := 0, map[string]bool{}
			errs := make(chan error, 50)
			for i := range 50 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					img := &store.Image{ID: fmt.Sprintf("img-%02d", i), SourceKey: "catalog:cirros", CatalogID: "cirros",
						PoolID: "p1", FileName: "cirros.qcow2"}
					got, isNew, err := s.CreateImage(ctx, img)
					if err != nil {
						errs <- err
						return
					}
					mu.Lock()
					defer mu.Unlock()
					if isNew {
						created++
					}
					ids[got.ID] = true
				}()
			}
			wg.Wait()
			close(errs)
			for err := range errs {
				t.Errorf("CreateImage: %v", err)
			}
			if created != 1 || len(ids) != 1 {
				t.Fatalf("created %d images, callers saw ids %v; want exactly one", created, ids)
			}
			all, err := s.Images(ctx, store.ImageFilter{PoolID: "p1"})
			if err != nil || len(all) != 1 {
				t.Fatalf("images in pool: %d (%v), want 1", len(all), err)
			}
		})
	}
}

func TestNewDownloadAllowedAfterFailureAndFileNameGuarded(t *testing.T) {
	for _, db := range testenv.Databases(t) {
		t.Run(db.Name, func(t *testing.T) {
			s := open(t, db.URL)
			seed(t, s)
			ctx := context.Background()
			first := &store.Image{ID: "a", SourceKey: "catalog:x", PoolID: "p1", FileName: "x.qcow2"}
			if _, ok, err := s.CreateImage(ctx, first); err != nil || !ok {
				t.Fatalf("first: created=%v err=%v", ok, err)
			}
			other := &store.Image{ID: "b", SourceKey: "https://example.com/x.qcow2", PoolID: "p1", FileName: "x.qcow2"}
			if _, _, err := s.CreateImage(ctx, other); !errors.Is(err, store.ErrFileNameTaken) {
				t.Fatalf("same file name, other source: err=%v, want ErrFileNameTaken", err)
			}
			if err := s.Transition(ctx, "a", store.ToFailed{Code: "upstream_error"}); err != nil {
				t.Fatal(err)
			}
			again := &store.Image{ID: "c", SourceKey: "catalog:x", PoolID: "p1", FileName: "x.qcow2"}
			if got, ok, err := s.CreateImage(ctx, again); err != nil || !ok || got.ID != "c" {
				t.Fatalf("after FAILED: got %q created=%v err=%v, want a new image c", got.ID, ok, err)
			}
			if _, _, err := s.CreateImage(ctx, &store.Image{ID: "d", SourceKey: "s", PoolID: "nope", FileName: "d"}); !errors.Is(err, store.ErrNotFound) {
				t.Fatalf("unknown pool: err=%v, want ErrNotFound", err)
			}
		})
	}
}

func TestStatusTransitionsAreGuarded(t *testing.T) {
	cases := []struct {
		path []string // statuses applied in order; the last one is checked
		ok   bool
	}{
		{[]string{store.StatusDownloading, store.StatusVerifying, store.StatusReady}, true},
		{[]string{store.StatusReady, store.StatusDownloading}, false},
		{[]string{store.StatusCancelled, store.StatusReady}, false},
		{[]string{store.StatusFailed, store.StatusDownloading}, false},
		{[]string{store.StatusReady, store.StatusReady}, true}, // a retried activity
		{[]string{store.StatusDownloading, store.StatusCancelled}, true},
		{[]string{store.StatusVerifying, store.StatusDownloading}, true}, // failover
		{[]string{store.StatusDownloading, store.StatusVerifying, store.StatusConverting, store.StatusReady}, true},
		{[]string{store.StatusDownloading, store.StatusConverting}, true},
		{[]string{store.StatusConverting}, false}, // nothing unverified is converted: not from PENDING
		{[]string{store.StatusReady, store.StatusConverting}, false},
		{[]string{store.StatusFailed, store.StatusConverting}, false},
		{[]string{store.StatusCancelled, store.StatusConverting}, false},
		{[]string{store.StatusDownloading, store.StatusConverting, store.StatusConverting}, true}, // a retried activity
		{[]string{store.StatusVerifying, store.StatusConverting, store.StatusDownloading}, true},  // failover
		{[]string{store.StatusVerifying, store.StatusConverting, store.StatusFailed}, true},
	}
	for _, db := range testenv.Databases(t) {
		t.Run(db.Name, func(t *testing.T) {
			s := open(t, db.URL)
			seed(t, s)
			ctx := context.Background()
			for i, c := range cases {
				id := fmt.Sprintf("img-%d", i)
				if _, _, err := s.CreateImage(ctx, &store.Image{ID: id, SourceKey: id, PoolID: "p1", FileName: id}); err != nil {
					t.Fatal(err)
				}
				var err error
				for _, st := range c.path {
					if err = s.Transition(ctx, id, to(st)); err != nil {
						break
					}
				}
				if c.ok != (err == nil) {
					t.Errorf("%v: err=%v, want ok=%v", c.path, err, c.ok)
				}
				if !c.ok && !errors.Is(err, store.ErrTransition) {
					t.Errorf("%v: err=%v, want ErrTransition", c.path, err)
				}
			}
			if err := s.Transition(ctx, "missing", store.ToReady{}); !errors.Is(err, store.ErrNotFound) {
				t.Errorf("unknown image: err=%v, want ErrNotFound", err)
			}
			if img, err := s.Image(ctx, "img-0"); err != nil || img.ReadyAt == nil {
				t.Errorf("READY image img-0: ready_at %v, err %v; want a ready_at", img.ReadyAt, err)
			}
		})
	}
}

func TestMigrationsRunTwiceAndConcurrently(t *testing.T) {
	for _, db := range testenv.Databases(t) {
		t.Run(db.Name, func(t *testing.T) {
			var wg sync.WaitGroup
			errs := make(chan error, 4)
			for range 4 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					s, err := store.Open(context.Background(), db.URL)
					if err != nil {
						errs <- err
						return
					}
					s.Close()
				}()
			}
			wg.Wait()
			close(errs)
			for err := range errs {
				t.Errorf("concurrent open: %v", err)
			}
			s := open(t, db.URL) // and once more, after
			v, err := s.SchemaVersion(context.Background())
			if err != nil || v < 1 {
				t.Fatalf("schema version %d, %v", v, err)
			}
			seed(t, s)
		})
	}
}

func TestPoolDeleteRefusedWhileImagesLive(t *testing.T) {
	for _, db := range testenv.Databases(t) {
		t.Run(db.Name, func(t *testing.T) {
			s := open(t, db.URL)
			seed(t, s)
			ctx := context.Background()
			if _, _, err := s.CreateImage(ctx, &store.Image{ID: "a", SourceKey: "k", PoolID: "p1", FileName: "f"}); err != nil {
				t.Fatal(err)
			}
			if err := s.DeletePool(ctx, "p1"); !errors.Is(err, store.ErrInUse) {
				t.Fatalf("delete pool with live image: %v, want ErrInUse", err)
			}
			if err := s.Transition(ctx, "a", store.ToCancelled{}); err != nil {
				t.Fatal(err)
			}
			if err := s.DeletePool(ctx, "p1"); err != nil {
				t.Fatalf("delete pool with only a cancelled image: %v", err)
			}
			if err := s.DeletePool(ctx, "p1"); !errors.Is(err, store.ErrNotFound) {
				t.Fatalf("delete pool twice: %v, want ErrNotFound", err)
			}
			if err := s.CreateNode(ctx, &store.Node{ID: "node-1", Address: "x:1"}); !errors.Is(err, store.ErrExists) {
				t.Fatalf("taken node id: %v, want ErrExists", err)
			}
		})
	}
}

func TestBadDatabaseURL(t *testing.T) {
	for _, u := range []string{"", "mysql://x", "postgres://", "sqlite:", "postgres://u:s3cret@/", "mysql://u:s3cret@h/db"} {
		err := store.ValidateURL(u)
		if err == nil {
			t.Errorf("ValidateURL(%q) = nil, want an error", u)
			continue
		}
		// The message says what to write instead, and never shows a password.
		if msg := err.Error(); !strings.Contains(msg, "postgres://") && !strings.Contains(msg, "sqlite:") {
			t.Errorf("ValidateURL(%q) = %q: names no form that works", u, msg)
		}
		if strings.Contains(err.Error(), "s3cret") {
			t.Errorf("ValidateURL(%q) = %q: shows the password", u, err)
		}
	}
}

// to is the plain transition to a status.
func to(status string) store.Transition {
	switch status {
	case store.StatusDownloading:
		return store.ToDownloading{NodeID: "node-1", Attempt: 1}
	case store.StatusVerifying:
		return store.ToVerifying{NodeID: "node-1"}
	case store.StatusConverting:
		return store.ToConverting{NodeID: "node-1"}
	case store.StatusReady:
		return store.ToReady{NodeID: "node-1", Path: "/p/x", SizeBytes: 1}
	case store.StatusFailed:
		return store.ToFailed{Code: "internal", Message: "x"}
	case store.StatusCancelled:
		return store.ToCancelled{}
	}
	panic("no transition to " + status)
}

func TestFailoversAreRecordedWhileLiveAndKeptAtTheEnd(t *testing.T) {
	for _, db := range testenv.Databases(t) {
		t.Run(db.Name, func(t *testing.T) {
			s := open(t, db.URL)
			seed(t, s)
			ctx := context.Background()
			if _, _, err := s.CreateImage(ctx, &store.Image{ID: "a", SourceKey: "k", PoolID: "p1", FileName: "f"}); err != nil {
				t.Fatal(err)
			}
			at := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
			one := []store.Failover{{NodeID: "node-1", Reason: "unreachable", Code: "node_unreachable", At: at}}
			if err := s.Transition(ctx, "a", to(store.StatusDownloading)); err != nil {
				t.Fatal(err)
			}
			if err := s.RecordFailovers(ctx, "a", one); err != nil {
				t.Fatal(err)
			}
			if img, err := s.Image(ctx, "a"); err != nil || len(img.Failovers) != 1 || img.Failovers[0].NodeID != "node-1" || !img.Failovers[0].At.Equal(at) {
				t.Fatalf("live image's failovers %+v (%v), want node-1's", img.Failovers, err)
			}
			if err := s.Transition(ctx, "a", store.ToCancelled{Failovers: one}); err != nil {
				t.Fatal(err)
			}
			if err := s.RecordFailovers(ctx, "a", nil); !errors.Is(err, store.ErrTransition) {
				t.Fatalf("failovers of a CANCELLED image: %v, want ErrTransition", err)
			}
			img, err := s.Image(ctx, "a")
			if err != nil || len(img.Failovers) != 1 || img.ErrorCode != store.CancelledCode {
				t.Fatalf("cancelled image: failovers %+v, error code %q (%v)", img.Failovers, img.ErrorCode, err)
			}
			if err := s.RecordChecksum(ctx, "a", "sha256:00", false, "unsigned"); !errors.Is(err, store.ErrTransition) {
				t.Fatalf("checksum of a CANCELLED image: %v, want ErrTransition", err)
			}
		})
	}
}

func TestImagesPageThroughInAStableOrder(t *testing.T) {
	for _, db := range testenv.Databases(t) {
		t.Run(db.Name, func(t *testing.T) {
			s := open(t, db.URL)
			seed(t, s)
			ctx := context.Background()
			// Seven images, four of them created at the same moment, so
			// that the id decides among those.
			same := time.Date(2026, 3, 4, 5, 6, 7, 123456000, time.UTC)
			for i := range 7 {
				at := same
				if i >= 4 {
					at = same.Add(time.Duration(i) * time.Second)
				}
				id := fmt.Sprintf("img-%d", i)
				img := &store.Image{ID: id, SourceKey: id, PoolID: "p1", FileName: id, CreatedAt: at}
				if _, _, err := s.CreateImage(ctx, img); err != nil {
					t.Fatal(err)
				}
			}
			all, err := s.Images(ctx, store.ImageFilter{})
			if err != nil || len(all) != 7 {
				t.Fatalf("all images: %d, %v", len(all), err)
			}
			var want []string
			for _, img := range all {
				want = append(want, img.ID)
			}
			if strings.Join(want, ",") != "img-6,img-5,img-4,img-0,img-1,img-2,img-3" {
				t.Fatalf("order %v, want newest first, then by id", want)
			}
			var got []string
			f := store.ImageFilter{Limit: 3}
			for range 10 {
				page, err := s.Images(ctx, f)
				if err != nil {
					t.Fatal(err)
				}
				for _, img := range page {
					got = append(got, img.ID)
				}
				if len(page) < f.Limit {
					break
				}
				c := store.CursorOf(page[len(page)-1])
				f.After = &c
			}
			if strings.Join(got, ",") != strings.Join(want, ",") {
				t.Fatalf("paged through %v, want %v", got, want)
			}
		})
	}
}

func TestReadyRecordsFormatCompressionAndBothChecksums(t *testing.T) {
	for _, db := range testenv.Databases(t) {
		t.Run(db.Name, func(t *testing.T) {
			s := open(t, db.URL)
			seed(t, s)
			ctx := context.Background()
			if v, err := s.SchemaVersion(ctx); err != nil || v < 4 {
				t.Fatalf("schema version %d (%v), want at least 4", v, err)
			}
			img := &store.Image{ID: "a", SourceKey: "k", PoolID: "p1", FileName: "f.qcow2", DeclaredFormat: "qcow2"}
			if _, _, err := s.CreateImage(ctx, img); err != nil {
				t.Fatal(err)
			}
			if got, err := s.Image(ctx, "a"); err != nil || got.DeclaredFormat != "qcow2" || got.Format != "" || got.FileChecksum != "" {
				t.Fatalf("PENDING image: declared %q, format %q, file checksum %q (%v); want qcow2 declared and nothing found yet",
					got.DeclaredFormat, got.Format, got.FileChecksum, err)
			}
			src, file := "sha256:"+strings.Repeat("a", 64), "sha256:"+strings.Repeat("b", 64)
			err := s.Transition(ctx, "a", store.ToReady{NodeID: "node-1", Path: "/p/f.qcow2", SizeBytes: 100, Checksum: src,
				Format: "qcow2", VirtualSizeBytes: 1 << 30, Compression: "xz", FileChecksum: file})
			if err != nil {
				t.Fatal(err)
			}
			got, err := s.Image(ctx, "a")
			if err != nil {
				t.Fatal(err)
			}
			if got.Format != "qcow2" || got.VirtualSizeBytes != 1<<30 || got.Compression != "xz" ||
				got.Checksum != src || got.SourceChecksum != src || got.FileChecksum != file {
				t.Fatalf("READY image: format %q, virtual size %d, compression %q, checksum %q, source %q, file %q",
					got.Format, got.VirtualSizeBytes, got.Compression, got.Checksum, got.SourceChecksum, got.FileChecksum)
			}
		})
	}
}

func TestPoolImageFormatAndConvertingIsLive(t *testing.T) {
	for _, db := range testenv.Databases(t) {
		t.Run(db.Name, func(t *testing.T) {
			s := open(t, db.URL)
			seed(t, s)
			ctx := context.Background()
			if v, err := s.SchemaVersion(ctx); err != nil || v < 5 {
				t.Fatalf("schema version %d (%v), want at least 5", v, err)
			}
			if err := s.CreatePool(ctx, &store.Pool{ID: "raw", Type: "local", ImageFormat: "raw"}, []string{"node-1"}); err != nil {
				t.Fatal(err)
			}
			if p, err := s.Pool(ctx, "raw"); err != nil || p.ImageFormat != "raw" {
				t.Fatalf("pool raw: image format %q (%v), want raw", p.ImageFormat, err)
			}
			if p, err := s.Pool(ctx, "p1"); err != nil || p.ImageFormat != "" {
				t.Fatalf("pool p1: image format %q (%v), want empty (keep what the vendor ships)", p.ImageFormat, err)
			}

			// A CONVERTING image is live: a second request for its source
			// gets it, another source cannot take its file name, its
			// progress is recorded, and its pool cannot be deleted.
			if _, _, err := s.CreateImage(ctx, &store.Image{ID: "a", SourceKey: "k", PoolID: "raw", FileName: "f.raw"}); err != nil {
				t.Fatal(err)
			}
			for _, tr := range []store.Transition{store.ToDownloading{NodeID: "node-1", Attempt: 1}, store.ToVerifying{NodeID: "node-1"}, store.ToConverting{NodeID: "node-1"}} {
				if err := s.Transition(ctx, "a", tr); err != nil {
					t.Fatal(err)
				}
			}
			got, created, err := s.CreateImage(ctx, &store.Image{ID: "b", SourceKey: "k", PoolID: "raw", FileName: "f.raw"})
			if err != nil || created || got.ID != "a" || got.Status != store.StatusConverting {
				t.Fatalf("second request for a CONVERTING source: got %q (%s), created=%v, %v; want the CONVERTING image a",
					got.ID, got.Status, created, err)
			}
			if _, _, err := s.CreateImage(ctx, &store.Image{ID: "c", SourceKey: "other", PoolID: "raw", FileName: "f.raw"}); !errors.Is(err, store.ErrFileNameTaken) {
				t.Fatalf("another source with the CONVERTING image's file name: %v, want ErrFileNameTaken", err)
			}
			if err := s.RecordWorkflow(ctx, "a", "wf-a"); err != nil {
				t.Fatal(err)
			}
			if img, err := s.Image(ctx, "a"); err != nil || img.WorkflowID != "wf-a" {
				t.Fatalf("workflow id of a CONVERTING image %q (%v), want recorded", img.WorkflowID, err)
			}
			if err := s.DeletePool(ctx, "raw"); !errors.Is(err, store.ErrInUse) {
				t.Fatalf("delete a pool with a CONVERTING image: %v, want ErrInUse", err)
			}
		})
	}
}
