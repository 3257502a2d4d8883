package testenv

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/testsuite"

	"github.com/quantix/cloudimages/internal/launch"
)

// TemporalCLIEnv names the variable with the path of the pinned temporal
// CLI; `make test` sets it to bin/temporal.
const TemporalCLIEnv = "CLOUDIMAGES_TEMPORAL_CLI"

// TemporalCLI returns the path of the pinned temporal CLI: $CLOUDIMAGES_TEMPORAL_CLI,
// else bin/temporal at the repository root. It fails the test when there is
// none: run `make tools` (make test does).
func TemporalCLI(t testing.TB) string {
	t.Helper()
	p := os.Getenv(TemporalCLIEnv)
	if p == "" {
		p = filepath.Join(RepoRoot(t), "bin", "temporal")
	}
	if _, err := os.Stat(p); err != nil {
		t.Fatalf("no temporal CLI at %s: run `make tools` (or `make test`, which does): %v", p, err)
	}
	return p
}

// DevServer is a real Temporal dev server started for a test.
type DevServer struct {
	*testsuite.DevServer
	Address string // host:port of the frontend
}

// StartDevServer starts the pinned Temporal dev server on a free port, in
// memory, with the contract's search attributes, and stops it when the test
// ends.
func StartDevServer(t testing.TB) *DevServer {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	srv, err := testsuite.StartDevServer(ctx, testsuite.DevServerOptions{
		ExistingPath:  TemporalCLI(t),
		ClientOptions: &client.Options{Namespace: "default"},
		LogLevel:      "error",
		ExtraArgs:     launch.SearchAttributeArgs(),
		Stdout:        os.Stderr,
		Stderr:        os.Stderr,
	})
	if err != nil {
		t.Fatalf("start Temporal dev server: %v", err)
	}
	t.Cleanup(func() {
		if err := srv.Stop(); err != nil {
			t.Logf("stop Temporal dev server: %v", err)
		}
	})
	return &DevServer{DevServer: srv, Address: srv.FrontendHostPort()}
}

// RepoRoot returns the repository root: the nearest directory above the
// test's working directory that holds go.mod.
func RepoRoot(t testing.TB) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatal("no go.mod above the working directory")
		}
		dir = parent
	}
}
