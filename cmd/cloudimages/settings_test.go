package main_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/quantix/cloudimages/internal/testenv"
)

// run runs the built binary with only env as its environment (plus PATH
// and HOME) and returns its exit code and output. A process that is still
// running after 30s (one that started serving) is killed and fails the test.
func run(t *testing.T, env []string, args ...string) (int, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, testenv.Binary(t), args...)
	cmd.Env = append([]string{"PATH=" + os.Getenv("PATH"), "HOME=" + t.TempDir()}, env...)
	cmd.Dir = t.TempDir()
	out, err := cmd.CombinedOutput()
	if ctx.Err() != nil {
		t.Errorf("%v: still running after 30s, killed:\n%s", args, out)
		return -1, string(out)
	}
	var exit *exec.ExitError
	switch {
	case err == nil:
		return 0, string(out)
	case errors.As(err, &exit):
		return exit.ExitCode(), string(out)
	}
	t.Fatalf("%v: %v", args, err)
	return 0, ""
}

// unreachableDB is a database URL whose server is down: an API that gets
// past its settings fails there (exit 1), so exit 2 means the settings.
func unreachableDB(t *testing.T) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return "postgres://app@" + addr + "/app?sslmode=disable&connect_timeout=1"
}

func TestAPIRefusesToListenBeyondLoopbackWithoutAToken(t *testing.T) {
	db := unreachableDB(t)
	for _, listen := range []string{"0.0.0.0:8080", ":8080", "[::]:8080", "10.1.2.3:8080", "api.example:8080"} {
		code, out := run(t, nil, "api", "--listen", listen, "--database-url", db)
		if code != 2 || !strings.Contains(out, "--api-token-file") || !strings.Contains(out, "--insecure-no-auth") {
			t.Errorf("api --listen %s without a token: exit %d, want 2 naming --api-token-file and --insecure-no-auth:\n%s", listen, code, out)
		}
	}
	// Loopback needs no token; with a token or --insecure-no-auth any
	// address is fine: the API gets past its settings to the database.
	for _, tc := range []struct {
		env  []string
		args []string
	}{
		{nil, []string{"--listen", "127.0.0.1:0"}},
		{nil, []string{"--listen", "localhost:0"}},
		{[]string{"CLOUDIMAGES_API_TOKEN=api-token-0123456789"}, []string{"--listen", "0.0.0.0:0"}},
		{nil, []string{"--listen", "0.0.0.0:0", "--insecure-no-auth"}},
		{[]string{"CLOUDIMAGES_INSECURE_NO_AUTH=true"}, []string{"--listen", ":0"}},
	} {
		code, out := run(t, tc.env, append([]string{"api", "--database-url", db}, tc.args...)...)
		if code != 1 || !strings.Contains(out, "connection refused") {
			t.Errorf("api %v (env %v): exit %d, want it to reach the database (exit 1):\n%s", tc.args, tc.env, code, out)
		}
	}
}

// TestInsecureNoAuthWarnsAtStart starts the API beyond loopback with
// --insecure-no-auth: it serves, and says loudly that it has no token.
func TestInsecureNoAuthWarnsAtStart(t *testing.T) {
	port := testenv.FreePort(t)
	cmd := exec.Command(testenv.Binary(t), "api", "--listen", fmt.Sprintf("0.0.0.0:%d", port), "--insecure-no-auth",
		"--database-url", testenv.SQLite(t), "--temporal-address", "127.0.0.1:1")
	cmd.Env = []string{"PATH=" + os.Getenv("PATH")}
	out := &strings.Builder{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/healthz", port))
		if err == nil {
			resp.Body.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the API does not answer: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	cmd.Process.Kill()
	cmd.Wait()
	if !strings.Contains(out.String(), "level=WARN") || !strings.Contains(out.String(), "INSECURE") {
		t.Errorf("no WARN about serving without a token:\n%s", out)
	}
}

func TestHelpDoesNotShowSecrets(t *testing.T) {
	env := []string{
		"CLOUDIMAGES_API_TOKEN=api-secret-0123456789",
		"CLOUDIMAGES_NODE_TOKEN=node-secret-0123456789",
		"DATABASE_URL=postgres://app:db-secret-0123456789@db:5432/app?sslmode=disable",
	}
	for _, cmd := range []string{"api", "worker", "nodeagent", "dev"} {
		code, out := run(t, env, cmd, "--help")
		if code != 0 {
			t.Fatalf("%s --help: exit %d\n%s", cmd, code, out)
		}
		if strings.Contains(out, "secret-0123456789") {
			t.Errorf("%s --help shows a secret:\n%s", cmd, out)
		}
	}
	_, out := run(t, env, "api", "--help")
	for _, want := range []string{"--api-token-file", "env CLOUDIMAGES_API_TOKEN_FILE", "--node-token-file", "env CLOUDIMAGES_NODE_TOKEN_FILE", "app:xxxxx@db:5432"} {
		if !strings.Contains(out, want) {
			t.Errorf("api --help lacks %q:\n%s", want, out)
		}
	}
}

func TestTokensComeFromFilesAndAreLongEnough(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	good := write("good", "  api-token-from-a-file-0123\n")
	db := unreachableDB(t)
	bad := []struct {
		name string
		env  []string
		args []string
		want []string
	}{
		{"value and file", nil, []string{"--api-token", "api-token-0123456789", "--api-token-file", good}, []string{"--api-token", "--api-token-file", "give one"}},
		{"value and file in env", []string{"CLOUDIMAGES_NODE_TOKEN=node-token-0123456789", "CLOUDIMAGES_NODE_TOKEN_FILE=" + good}, nil, []string{"CLOUDIMAGES_NODE_TOKEN_FILE", "give one"}},
		{"missing file", nil, []string{"--api-token-file", filepath.Join(dir, "nope")}, []string{"--api-token-file", "no such file"}},
		{"empty file", nil, []string{"--node-token-file", write("empty", " \n")}, []string{"is empty", "openssl rand -hex 24"}},
		{"short token", nil, []string{"--api-token", "changeme"}, []string{"--api-token", "at least 16", "openssl rand -hex 24"}},
		{"short token in a file", nil, []string{"--node-token-file", write("short", "abc\n")}, []string{"--node-token", "at least 16"}},
		{"whitespace token", []string{"CLOUDIMAGES_API_TOKEN=                    "}, nil, []string{"--api-token is only whitespace", "openssl rand -hex 24"}},
	}
	for _, tc := range bad {
		code, out := run(t, tc.env, append([]string{"api", "--database-url", db}, tc.args...)...)
		if code != 2 {
			t.Errorf("%s: exit %d, want 2:\n%s", tc.name, code, out)
		}
		for _, w := range tc.want {
			if !strings.Contains(out, w) {
				t.Errorf("%s: the message lacks %q:\n%s", tc.name, w, out)
			}
		}
	}
	// The file's token, trimmed, is taken, and beyond loopback too.
	for _, env := range [][]string{nil, {"CLOUDIMAGES_API_TOKEN_FILE=" + good}} {
		args := []string{"api", "--database-url", db, "--listen", "0.0.0.0:0"}
		if env == nil {
			args = append(args, "--api-token-file", good)
		}
		if code, out := run(t, env, args...); code != 1 || !strings.Contains(out, "connection refused") {
			t.Errorf("api with a token file (env %v): exit %d, want it to reach the database:\n%s", env, code, out)
		}
	}
	// The agent takes the same token flags.
	code, out := run(t, nil, "nodeagent", "--node-id", "n1", "--pool", "p="+t.TempDir(), "--node-token", "short")
	if code != 2 || !strings.Contains(out, "at least 16") {
		t.Errorf("nodeagent with a short token: exit %d, want 2:\n%s", code, out)
	}
}

// A worker given a --keyring it cannot use stops at start with an error
// that names the directory or file and says what to put there, rather
// than running with fewer keys than the operator meant.
func TestWorkerRefusesAKeyringItCannotUse(t *testing.T) {
	notKey := t.TempDir()
	if err := os.WriteFile(filepath.Join(notKey, "ubuntu.asc"), []byte("<html>not a key</html>"), 0o644); err != nil {
		t.Fatal(err)
	}
	cases := map[string]struct{ dir, says string }{
		"missing directory": {filepath.Join(t.TempDir(), "nope"), "directory of armored public keys"},
		"a file not a key":  {notKey, "ubuntu.asc is not an OpenPGP public key"},
	}
	for name, c := range cases {
		code, out := run(t, []string{"CLOUDIMAGES_KEYRING=" + c.dir}, "worker", "--database-url", testenv.SQLite(t),
			"--temporal-address", "127.0.0.1:1", "--node-token", "a-node-token-of-24-chars")
		if code == 0 || !strings.Contains(out, c.says) {
			t.Errorf("%s: exit %d, output:\n%s\nwant a failure saying %q", name, code, out, c.says)
		}
	}
}
