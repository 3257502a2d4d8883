package testenv

import (
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
)

// BinaryEnv names the variable with the path of a built cloudimages
// binary; `make test` sets it to bin/cloudimages.
const BinaryEnv = "CLOUDIMAGES_BIN"

var build struct {
	once sync.Once
	path string
	out  []byte
	err  error
}

// Binary returns the path of the cloudimages binary: $CLOUDIMAGES_BIN when
// set, else one `go build ./cmd/cloudimages` per test process into a
// temporary directory (left behind for the next packages' tests to ignore;
// `make test` never takes this path).
func Binary(t testing.TB) string {
	t.Helper()
	if p := os.Getenv(BinaryEnv); p != "" {
		if _, err := os.Stat(p); err != nil {
			t.Fatalf("%s=%s: %v (run `make build`, or unset it to build here)", BinaryEnv, p, err)
		}
		return p
	}
	root := RepoRoot(t)
	build.once.Do(func() {
		dir, err := os.MkdirTemp("", "cloudimages-test-bin-")
		if err != nil {
			build.err = err
			return
		}
		build.path = filepath.Join(dir, "cloudimages")
		cmd := exec.Command("go", "build", "-o", build.path, "./cmd/cloudimages")
		cmd.Dir = root
		build.out, build.err = cmd.CombinedOutput()
	})
	if build.err != nil {
		t.Fatalf("go build ./cmd/cloudimages: %v\n%s", build.err, build.out)
	}
	return build.path
}
