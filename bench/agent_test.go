package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/quantix/cloudimages/nodeagent"
	"github.com/quantix/cloudimages/nodeagent/agentclient"
)

// BenchmarkAgentDownload runs the agent's download loop in this process
// against the bench mirror (sendfile, as from a real mirror), so that
// `go test -run '^$' -bench AgentDownload -cpuprofile cpu.out ./bench`
// shows where its time goes (a 256 MiB file per iteration). The profile
// also holds the mirror and the file's creation: focus on nodeagent.
func BenchmarkAgentDownload(b *testing.B) {
	const size = 256 << 20
	srcDir := b.TempDir()
	src, err := makeSource(srcDir, "bench.img", size)
	if err != nil {
		b.Fatal(err)
	}
	m, err := startMirror(srcDir)
	if err != nil {
		b.Fatal(err)
	}
	defer m.close()
	s, err := nodeagent.New(nodeagent.Config{NodeID: "bench", Token: "t", AllowPrivateNetworks: true,
		Pools:  []nodeagent.PoolDir{{ID: "p", Dir: b.TempDir()}},
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	srv := httptest.NewServer(s.Handler())
	defer srv.Close()
	c := agentclient.New(srv.URL, "t")
	ctx := context.Background()
	b.SetBytes(size)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		req := agentclient.DownloadRequest{ID: fmt.Sprintf("b-%d", i), URL: m.fileURL(src.Name, "", 0), PoolID: "p",
			FileName: fmt.Sprintf("b-%d.img", i), Checksum: src.Checksum(), SizeBytes: size, Format: "raw"}
		d, err := runAgentJob(ctx, c, req, 5*time.Millisecond)
		if err != nil || d.State != agentclient.StateCompleted {
			b.Fatalf("download: %v %+v", err, d)
		}
		b.StopTimer()
		if err := c.DeleteFile(ctx, "p", req.FileName); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
	}
}
