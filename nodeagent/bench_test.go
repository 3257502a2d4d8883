package nodeagent_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/quantix/cloudimages/internal/testenv"
	"github.com/quantix/cloudimages/nodeagent"
	"github.com/quantix/cloudimages/nodeagent/agentclient"
)

// BenchmarkDownload measures the engine end to end — HTTP from a local
// mirror, sha256 in the same pass, write, fsync, rename — in bytes per
// second. `make bench` compares the agent with curl; this one is for
// changes to the engine itself: go test -bench Download ./nodeagent/
func BenchmarkDownload(b *testing.B) {
	const size = 64 << 20
	data := testenv.QCOW2Image(size, 1)
	up := testenv.NewUpstream(b)
	url := up.AddFile("bench.qcow2", data)
	benchDownloads(b, url, testenv.SHA256(data), size)
}

// BenchmarkDownloadTLS is BenchmarkDownload from an HTTPS mirror (a CA
// made for the run, given as CAFile): each TLS read brings one record,
// 16 KiB at most. go test -bench DownloadTLS ./nodeagent/
func BenchmarkDownloadTLS(b *testing.B) {
	const size = 64 << 20
	data := testenv.QCOW2Image(size, 1)
	ca := testenv.NewCA(b, "127.0.0.1")
	up := testenv.NewTLSUpstream(b, ca)
	url := up.AddFile("bench.qcow2", data)
	benchDownloads(b, url, testenv.SHA256(data), size, func(c *nodeagent.Config) { c.CAFile = ca.CAFile })
}

// benchDownloads runs b.N downloads of url (its sha256 is sum) through an
// agent served in-process, counting size bytes per download.
func benchDownloads(b *testing.B, url, sum string, size int64, change ...func(*nodeagent.Config)) {
	cfg := nodeagent.Config{
		NodeID: "bench", Token: testToken, AllowPrivateNetworks: true,
		Pools:  []nodeagent.PoolDir{{ID: "pool-1", Dir: b.TempDir()}},
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
	}
	for _, f := range change {
		f(&cfg)
	}
	srv, err := nodeagent.New(cfg)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(srv.Close)
	c := agentclient.New(newServer(b, srv), testToken)
	b.SetBytes(size)
	b.ResetTimer()
	for i := range b.N {
		id := fmt.Sprintf("bench-%d", i)
		if _, err := c.StartDownload(context.Background(), agentclient.DownloadRequest{ID: id, URL: url, PoolID: "pool-1", FileName: id + ".qcow2", Checksum: sum}); err != nil {
			b.Fatal(err)
		}
		awaitCompleted(b, c, id)
	}
}

// BenchmarkCompressedDownload measures a compressed download end to end —
// the compressed bytes over HTTP and hashed, then decompressed, hashed
// again and written, fsync, rename — in decompressed bytes per second:
// go test -bench CompressedDownload ./nodeagent/
func BenchmarkCompressedDownload(b *testing.B) {
	const size = 64 << 20
	// Half-compressible data: a qcow2 header, then bytes of 4 bits each.
	image := testenv.QCOW2Image(size, 2)
	for i := 1536; i < len(image); i++ {
		image[i] &= 0x0f
	}
	for _, c := range compressors {
		b.Run(c.kind, func(b *testing.B) {
			compressed := compress(b, c.tool, image)
			up := testenv.NewUpstream(b)
			url := up.AddFile("bench.qcow2"+c.ext, compressed)
			benchDownloads(b, url, testenv.SHA256(compressed), size)
		})
	}
}

// BenchmarkUpload measures the agent's receiving side of an upload — one
// PATCH of the whole file (sent from a file with sendfile, so the sender
// costs little), sha256 in the same pass, write, checkpoint, fsync,
// inspection, publish — in bytes per second. For the agent's share of
// `make bench` part upload, under pprof:
// go test -run '^$' -bench Upload -cpuprofile cpu.out ./nodeagent/
func BenchmarkUpload(b *testing.B) {
	const size = 256 << 20
	data := testenv.QCOW2Image(size, 1)
	file := filepath.Join(b.TempDir(), "up.qcow2")
	if err := os.WriteFile(file, data, 0o644); err != nil {
		b.Fatal(err)
	}
	sum := testenv.SHA256(data)
	srv, err := nodeagent.New(nodeagent.Config{
		NodeID: "bench", Token: testToken, AllowPrivateNetworks: true,
		Pools:  []nodeagent.PoolDir{{ID: "pool-1", Dir: b.TempDir()}},
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(srv.Close)
	c := agentclient.New(newServer(b, srv), testToken)
	b.SetBytes(size)
	b.ResetTimer()
	for i := range b.N {
		id := fmt.Sprintf("bench-%d", i)
		if _, err := c.StartUpload(context.Background(), agentclient.UploadRequest{ID: id, PoolID: "pool-1", FileName: id + ".qcow2", Checksum: sum, SizeBytes: size}); err != nil {
			b.Fatal(err)
		}
		f, err := os.Open(file)
		if err != nil {
			b.Fatal(err)
		}
		_, err = c.WriteUpload(context.Background(), id, 0, f, size)
		f.Close()
		if err != nil {
			b.Fatal(err)
		}
		awaitCompleted(b, c, id)
	}
}

// awaitCompleted polls job id until it ends, and fails the benchmark
// unless it completed.
func awaitCompleted(b *testing.B, c *agentclient.Client, id string) {
	for {
		d, err := c.Download(context.Background(), id)
		if err != nil {
			b.Fatal(err)
		}
		if d.Finished() {
			if d.State != agentclient.StateCompleted {
				b.Fatalf("%s failed: %+v", id, d.Error)
			}
			return
		}
		time.Sleep(time.Millisecond)
	}
}
