package api_test

import (
	"bufio"
	"context"
	"encoding/json"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/quantix/cloudimages/api"
	"github.com/quantix/cloudimages/store"
)

// stream is an open events stream of an image.
type stream struct {
	images   chan image
	comments chan string
	done     chan struct{} // closed when the server ended the stream
	cancel   context.CancelFunc
	header   http.Header
}

func (e *env) follow(t *testing.T, id string) *stream {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	req, _ := http.NewRequestWithContext(ctx, "GET", e.http.URL+"/v1/images/"+id+"/events", nil)
	if e.token != "" {
		req.Header.Set("Authorization", "Bearer "+e.token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("follow: %v", err)
	}
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("follow: status %d", resp.StatusCode)
	}
	s := &stream{images: make(chan image, 1000), comments: make(chan string, 1000), done: make(chan struct{}),
		cancel: cancel, header: resp.Header}
	go func() {
		defer close(s.done)
		defer resp.Body.Close()
		sc := bufio.NewScanner(resp.Body)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			line := sc.Text()
			switch {
			case strings.HasPrefix(line, "data: "):
				var img image
				if err := json.Unmarshal([]byte(strings.TrimPrefix(line, "data: ")), &img); err != nil {
					t.Errorf("event data is not an Image: %v: %s", err, line)
					return
				}
				s.images <- img
			case strings.HasPrefix(line, ":"):
				s.comments <- line
			}
		}
	}()
	return s
}

// next waits for an image snapshot that satisfies cond.
func (s *stream) next(t *testing.T, what string, cond func(image) bool) image {
	t.Helper()
	timeout := time.After(30 * time.Second)
	for {
		select {
		case img := <-s.images:
			if cond(img) {
				return img
			}
		case <-s.done:
			// The stream's last events may still wait in the channel: select
			// picks either ready case, so read them before saying it ended.
			for {
				select {
				case img := <-s.images:
					if cond(img) {
						return img
					}
				default:
					t.Fatalf("the stream ended before %s", what)
				}
			}
		case <-timeout:
			t.Fatalf("no event with %s", what)
		}
	}
}

func TestEventsStreamProgressAndEndAtTerminalStatus(t *testing.T) {
	forEachDB(t, func(t *testing.T, dbURL string) {
		e := newEnv(t, dbURL, withOptions(func(o *api.Options) { o.HeartbeatInterval = 200 * time.Millisecond }))
		ctx := context.Background()
		pool, node := e.seed("nfs", "127.0.0.1:1")
		var img image
		e.must(http.StatusAccepted, "POST", "/v1/images", map[string]any{"catalog_id": "cirros-0.6.3", "pool_id": pool}, &img)

		s := e.follow(t, img.ID)
		if ct := s.header.Get("Content-Type"); ct != "text/event-stream" {
			t.Errorf("Content-Type %q", ct)
		}
		s.next(t, "the PENDING snapshot", func(i image) bool { return i.ID == img.ID && i.Status == store.StatusPending })
		// An idle stream sends keep-alive comments.
		select {
		case c := <-s.comments:
			if !strings.Contains(c, "keep-alive") {
				t.Errorf("comment %q", c)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("no keep-alive comment on an idle stream")
		}

		// The worker's watch writes progress into the store; the stream shows it.
		if err := e.store.Transition(ctx, img.ID, store.ToDownloading{NodeID: node, Attempt: 1}); err != nil {
			t.Fatal(err)
		}
		if err := e.store.UpdateProgress(ctx, img.ID, store.Progress{BytesDone: 250, BytesTotal: 1000, BytesPerSecond: 50, Attempt: 1, NodeID: node}); err != nil {
			t.Fatal(err)
		}
		got := s.next(t, "the progress", func(i image) bool { return i.Progress.BytesDone == 250 })
		p := got.Progress
		if got.Status != store.StatusDownloading || p.BytesTotal != 1000 || p.Percent != 25 || p.BytesPerSecond != 50 ||
			p.ETASeconds == nil || *p.ETASeconds != 15 || p.Attempt != 1 || p.NodeID != node {
			t.Errorf("progress snapshot: %+v %+v", got.Status, p)
		}
		// While it moves, a snapshot comes at least every second even
		// without changes.
		start := time.Now()
		for range 3 {
			s.next(t, "a snapshot while downloading", func(image) bool { return true })
		}
		if time.Since(start) > 3*time.Second {
			t.Errorf("3 snapshots took %s while downloading", time.Since(start))
		}

		if err := e.store.Transition(ctx, img.ID, store.ToReady{NodeID: node, Path: "/pools/x/cloud-images/cirros-0.6.3.img", SizeBytes: 1000}); err != nil {
			t.Fatal(err)
		}
		last := s.next(t, "READY", func(i image) bool { return i.Status == store.StatusReady })
		if last.ReadyAt == nil || last.Progress.ETASeconds != nil || last.Path == "" {
			t.Errorf("READY snapshot: %+v", last)
		}
		select {
		case <-s.done:
		case <-time.After(5 * time.Second):
			t.Fatal("the stream did not end after READY")
		}
		// A terminal image's stream answers one snapshot and ends.
		s2 := e.follow(t, img.ID)
		s2.next(t, "READY", func(i image) bool { return i.Status == store.StatusReady })
		<-s2.done
	})
}

var streamsGauge = regexp.MustCompile(`(?m)^cloudimages_api_event_streams (\d+)`)

func TestEventsStreamStopsWhenTheClientLeavesOrTheServerCloses(t *testing.T) {
	e := newEnv(t, testenvSQLite(t))
	pool, _ := e.seed("nfs", "127.0.0.1:1")
	var img image
	e.must(http.StatusAccepted, "POST", "/v1/images", map[string]any{"catalog_id": "cirros-0.6.3", "pool_id": pool}, &img)
	open := func() string {
		m := e.must(http.StatusOK, "GET", "/metrics", nil, nil)
		if g := streamsGauge.FindSubmatch(m.body); g != nil {
			return string(g[1])
		}
		return "?"
	}
	s := e.follow(t, img.ID)
	s.next(t, "a snapshot", func(image) bool { return true })
	if n := open(); n != "1" {
		t.Fatalf("open streams %s, want 1", n)
	}
	s.cancel()
	eventually(t, 5*time.Second, "the stream's handler ends when its client leaves", func() bool { return open() == "0" })

	s = e.follow(t, img.ID)
	s.next(t, "a snapshot", func(image) bool { return true })
	e.srv.Close()
	select {
	case <-s.done:
	case <-time.After(5 * time.Second):
		t.Fatal("the stream did not end when the server closed")
	}
}
