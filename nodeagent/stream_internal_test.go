package nodeagent

import (
	"context"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/quantix/cloudimages/checksum"
	"github.com/quantix/cloudimages/fault"
	"github.com/quantix/cloudimages/nodeagent/agentclient"
)

// TestRefusedHeadLeavesFileAndHashTogether: when the first chunk turns
// out to be a web page, the partial file and the hash still cover the
// same bytes, so no checkpoint saved afterwards (a shutdown at that
// moment) can resume from a hash that misses what the file holds.
func TestRefusedHeadLeavesFileAndHashTogether(t *testing.T) {
	s, err := New(Config{NodeID: "n", Token: "t", Pools: []PoolDir{{ID: "p", Dir: t.TempDir()}},
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	req := agentclient.DownloadRequest{ID: "x", URL: "http://mirror.example/x.img", PoolID: "p", FileName: "x.img"}
	j := newJob(s.pools["p"], newRecord(req, "n"), s.log)
	tr, err := s.openTransfer(j)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tr.f.Close() })
	ctx, cancel := context.WithCancelCause(context.Background())
	defer cancel(nil)
	stall := time.NewTimer(time.Hour)
	defer stall.Stop()
	page := "<html><body>" + strings.Repeat("sign in to the portal ", 100)

	err = tr.stream(ctx, cancel, strings.NewReader(page), stall)
	if fe, ok := fault.As(err); !ok || fe.Code != fault.NotADiskImage {
		t.Fatalf("stream of a web page: %v; want not_a_disk_image", err)
	}
	fi, err := tr.f.Stat()
	if err != nil {
		t.Fatal(err)
	}
	if fi.Size() != tr.done {
		t.Errorf("partial file holds %d bytes, bytes done is %d", fi.Size(), tr.done)
	}
	want := checksum.NewHash("sha256")
	want.Write([]byte(page[:tr.done]))
	if got, exp := checksum.Of("sha256", tr.h), checksum.Of("sha256", want); got != exp {
		t.Errorf("hash after the refusal is %s, the %d bytes done hash to %s", got, tr.done, exp)
	}
}
