package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/quantix/cloudimages/api"
	"github.com/quantix/cloudimages/catalog"
	"github.com/quantix/cloudimages/internal/testenv"
)

// cliResult is how a run of the client ended.
type cliResult struct {
	code           int
	stdout, stderr string
}

func (r cliResult) String() string {
	return fmt.Sprintf("exit %d\nstdout:\n%s\nstderr:\n%s", r.code, r.stdout, r.stderr)
}

// cliEnv is the environment of a client run against the stack: the API's
// address and token from the variables, as a user would set them.
func cliEnv(s *testenv.Stack, token string) []string {
	return []string{"PATH=" + os.Getenv("PATH"), "HOME=" + os.TempDir(),
		"CLOUDIMAGES_API_URL=" + s.APIURL(), "CLOUDIMAGES_API_TOKEN=" + token}
}

// cli runs the built binary as a client and returns how it ended.
func cli(t *testing.T, env []string, args ...string) cliResult {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, testenv.Binary(t), args...)
	cmd.Env = env
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	r := cliResult{stdout: stdout.String(), stderr: stderr.String()}
	var exit *exec.ExitError
	switch {
	case ctx.Err() != nil:
		t.Fatalf("cloudimages %v: still running after 3 minutes\n%s", args, r)
	case errors.As(err, &exit):
		r.code = exit.ExitCode()
	case err != nil:
		t.Fatalf("cloudimages %v: %v", args, err)
	}
	return r
}

// lockedBuffer is a buffer a running process writes while the test reads it.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// TestCLIAgainstTheStack drives `cloudimages` as a user would, against a
// whole stack (Temporal, worker, API with a token, two agents) and the
// local mirror: each subtest leaves the stack running for the next.
func TestCLIAgainstTheStack(t *testing.T) {
	const token = "cli-test-token-0123456789"
	s := testenv.StartStack(t, testenv.StackOptions{APIToken: token})
	up := testenv.NewUpstream(t)
	env := cliEnv(s, token)

	var ready api.Image
	t.Run("pull --wait shows progress and ends READY with exit 0", func(t *testing.T) {
		f := addImage(up, "cli-pull.qcow2", trickleSize)
		up.SetFault(f.name, testenv.Fault{BytesPerSecond: trickleRate})
		r := cli(t, env, "images", "pull", f.url, "--checksum", f.sum, "--pool", "local-1", "--name", "cli-pull", "--wait")
		if r.code != 0 {
			t.Fatalf("pull --wait: %s", r)
		}
		if !regexp.MustCompile(`DOWNLOADING\s+\d+\.\d%\s+[\d.]+ [KMG]iB of 3\.0 MiB`).MatchString(r.stderr) {
			t.Errorf("no progress line (DOWNLOADING, percent, bytes of total) on stderr:\n%s", r.stderr)
		}
		m := regexp.MustCompile(`image (\S+) READY at (\S+) on node-1`).FindStringSubmatch(r.stdout)
		if m == nil {
			t.Fatalf("stdout does not say the image is READY, where and on which node:\n%s", r)
		}
		ready = getImage(t, s, m[1])
		checkReadyFile(t, ready, f)
		if ready.Path != m[2] {
			t.Errorf("the CLI says the image is at %s, the API at %s", m[2], ready.Path)
		}
	})
	if ready.ID == "" {
		t.FailNow()
	}

	var failed api.Image
	t.Run("a pull with a wrong checksum exits 1 with checksum_mismatch", func(t *testing.T) {
		f := addImage(up, "cli-bad-sum.qcow2", smallSize)
		wrong := testenv.SHA256([]byte("not these bytes"))
		r := cli(t, env, "images", "pull", f.url, "--checksum", wrong, "--pool", "local-2", "--wait", "-o", "json")
		if r.code != 1 {
			t.Fatalf("exit %d, want 1:\n%s", r.code, r)
		}
		if !regexp.MustCompile(`image \S+ FAILED: checksum_mismatch: \S`).MatchString(r.stderr) {
			t.Errorf("stderr does not give the error's code and message:\n%s", r.stderr)
		}
		if err := json.Unmarshal([]byte(r.stdout), &failed); err != nil || failed.Status != "FAILED" {
			t.Fatalf("-o json prints the final image: %v, %+v\n%s", err, failed, r.stdout)
		}
		wantError(t, getImage(t, s, failed.ID), "checksum_mismatch")
	})

	t.Run("images ls -o json lists every page, filtered by pool and status", func(t *testing.T) {
		r := cli(t, env, "images", "ls", "-o", "json", "--page-size", "1")
		var all struct{ Items []api.Image }
		if err := json.Unmarshal([]byte(r.stdout), &all); r.code != 0 || err != nil {
			t.Fatalf("ls -o json: %v\n%s", err, r)
		}
		got := map[string]string{}
		for _, i := range all.Items {
			got[i.ID] = i.Status
		}
		if len(all.Items) != 2 || got[ready.ID] != "READY" || got[failed.ID] != "FAILED" {
			t.Errorf("ls -o json, one image a page, lists %v, want %s READY and %s FAILED", got, ready.ID, failed.ID)
		}
		r = cli(t, env, "images", "ls", "--pool", "local-1", "--status", "ready")
		if r.code != 0 || !strings.Contains(r.stdout, ready.ID) || strings.Contains(r.stdout, failed.ID) ||
			!regexp.MustCompile(`(?m)^ID\s+NAME\s+POOL\s+NODE\s+STATUS`).MatchString(r.stdout) {
			t.Errorf("ls --pool local-1 --status ready: want a table with only %s:\n%s", ready.ID, r)
		}
		r = cli(t, env, "images", "ls", "--pool", "no-such-pool")
		if r.code != 1 || !strings.HasPrefix(r.stderr, "pool_not_found: ") {
			t.Errorf("ls in an unknown pool: want exit 1 and pool_not_found: …\n%s", r)
		}
	})

	t.Run("images get shows one image; an unknown one is not_found", func(t *testing.T) {
		r := cli(t, env, "images", "get", ready.ID)
		for _, want := range []string{"Status:", "READY", "Path:", ready.Path, ready.Checksum} {
			if !strings.Contains(r.stdout, want) {
				t.Errorf("images get lacks %q:\n%s", want, r)
			}
		}
		r = cli(t, env, "images", "get", ready.ID, "-o", "json")
		var img api.Image
		if err := json.Unmarshal([]byte(r.stdout), &img); r.code != 0 || err != nil || img.ID != ready.ID || img.Path != ready.Path {
			t.Errorf("images get -o json: %v, %+v\n%s", err, img, r)
		}
		r = cli(t, env, "images", "get", "no-such-image")
		if r.code != 1 || !strings.HasPrefix(r.stderr, "not_found: ") {
			t.Errorf("get of an unknown image: want exit 1 and not_found: …\n%s", r)
		}
	})

	t.Run("images wait follows an image to its end: 0 for READY, 1 with the error otherwise", func(t *testing.T) {
		if r := cli(t, env, "images", "wait", ready.ID); r.code != 0 || !strings.Contains(r.stdout, "image "+ready.ID+" READY at "+ready.Path) {
			t.Errorf("wait on a READY image: %s", r)
		}
		if r := cli(t, env, "images", "wait", failed.ID); r.code != 1 || !strings.Contains(r.stderr, "image "+failed.ID+" FAILED: checksum_mismatch: ") {
			t.Errorf("wait on a FAILED image: %s", r)
		}
		if r := cli(t, env, "images", "wait", "no-such-image"); r.code != 1 || !strings.HasPrefix(r.stderr, "not_found: ") {
			t.Errorf("wait on an unknown image: %s", r)
		}
	})

	t.Run("catalog ls, pools ls and nodes ls list what the API has", func(t *testing.T) {
		var entries struct{ Items []catalog.Entry }
		s.API.MustDo(t, http.MethodGet, "/v1/catalog", nil, &entries, http.StatusOK)
		r := cli(t, env, "catalog", "ls")
		if r.code != 0 || len(entries.Items) == 0 || !strings.Contains(r.stdout, entries.Items[0].ID) {
			t.Errorf("catalog ls does not list %v:\n%s", entries.Items, r)
		}
		r = cli(t, env, "catalog", "ls", "-o", "json")
		var listed struct{ Items []catalog.Entry }
		if err := json.Unmarshal([]byte(r.stdout), &listed); err != nil || len(listed.Items) != len(entries.Items) {
			t.Errorf("catalog ls -o json: %v, %d entries, want %d", err, len(listed.Items), len(entries.Items))
		}
		r = cli(t, env, "pools", "ls")
		for _, p := range []string{"shared", "local-1", "local-2"} {
			if r.code != 0 || !regexp.MustCompile(`(?m)^`+p+`\s`).MatchString(r.stdout) {
				t.Errorf("pools ls lacks pool %s:\n%s", p, r)
			}
		}
		eventually(t, 30*time.Second, "nodes ls shows both nodes online", func() bool {
			r = cli(t, env, "nodes", "ls")
			return r.code == 0 && regexp.MustCompile(`(?m)^node-1\s.*\sonline\s`).MatchString(r.stdout) &&
				regexp.MustCompile(`(?m)^node-2\s.*\sonline\s`).MatchString(r.stdout)
		})
	})

	t.Run("a wrong or missing token exits 1 with unauthorized", func(t *testing.T) {
		for _, e := range [][]string{cliEnv(s, "wrong-token-0123456789"), cliEnv(s, "")} {
			r := cli(t, e, "images", "ls")
			if r.code != 1 || !strings.HasPrefix(r.stderr, "unauthorized: ") {
				t.Errorf("images ls with %s: want exit 1 and unauthorized: …\n%s", e[len(e)-1], r)
			}
		}
		// A flag wins over its variable, and a token file works.
		file := filepath.Join(t.TempDir(), "token")
		if err := os.WriteFile(file, []byte(token+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		if r := cli(t, cliEnv(s, "wrong-token-0123456789"), "pools", "ls", "--api-token-file", file); r.code != 0 {
			t.Errorf("--api-token-file with the right token: %s", r)
		}
		if r := cli(t, cliEnv(s, ""), "pools", "ls", "--api-token", token); r.code != 0 {
			t.Errorf("--api-token with the right token: %s", r)
		}
	})

	t.Run("Ctrl-C while waiting leaves the download running, images rm cancels it", func(t *testing.T) {
		f := addImage(up, "cli-interrupt.qcow2", trickleSize)
		up.SetFault(f.name, testenv.Fault{BytesPerSecond: trickleRate / 4})
		cmd := exec.Command(testenv.Binary(t), "images", "pull", f.url, "--checksum", f.sum, "--pool", "shared", "--wait")
		cmd.Env = env
		var stdout, stderr lockedBuffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { cmd.Process.Kill() })
		var id string
		eventually(t, time.Minute, "the CLI shows the download moving", func() bool {
			m := regexp.MustCompile(`(?m)^(\S+)\s+DOWNLOADING\s+\d`).FindStringSubmatch(stderr.String())
			if m != nil {
				id = m[1]
			}
			return m != nil
		})
		if err := cmd.Process.Signal(syscall.SIGINT); err != nil {
			t.Fatal(err)
		}
		err := cmd.Wait()
		var exit *exec.ExitError
		if !errors.As(err, &exit) || exit.ExitCode() != 130 {
			t.Errorf("after SIGINT the CLI ended with %v, want exit 130\n%s", err, stderr.String())
		}
		for _, want := range []string{"its download goes on", "cloudimages images wait " + id, "cloudimages images rm " + id} {
			if !strings.Contains(stderr.String(), want) {
				t.Errorf("the CLI's last words lack %q:\n%s", want, stderr.String())
			}
		}
		before := getImage(t, s, id).Progress.BytesDone
		waitImage(t, s, id, time.Minute, "the download moving on without the CLI", func(i api.Image) bool {
			return i.Status == "DOWNLOADING" && i.Progress.BytesDone > before
		})

		r := cli(t, env, "images", "rm", id)
		if r.code != 0 || !strings.Contains(r.stdout, id+": cancelling the download") {
			t.Fatalf("images rm of a live download: %s", r)
		}
		waitStatus(t, s, id, "CANCELLED", time.Minute)
		checkNoData(t, s, "shared", "")
	})

	t.Run("images upload, killed half way, resumes when run again and ends READY", func(t *testing.T) {
		data := testenv.QCOW2Image(4<<20, 31)
		file, sum := writeFile(t, data), testenv.SHA256(data)
		// The CLI reaches the API through a link of 1 MiB/s, so that it
		// can be killed in the middle of the file.
		link := newSlowLink(t, s.APIURL(), 1<<20)
		env := append(cliEnv(s, token), "CLOUDIMAGES_API_URL="+link.URL(), "XDG_CACHE_HOME="+t.TempDir())
		args := []string{"images", "upload", file, "--pool", "local-2", "--name", "cli-upload.qcow2", "--checksum", sum}
		cmd := exec.Command(testenv.Binary(t), args...)
		cmd.Env = env
		var out lockedBuffer
		cmd.Stdout, cmd.Stderr = &out, &out
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { cmd.Process.Kill() })
		eventually(t, time.Minute, "the CLI sends half the file", func() bool { return link.BodyBytes() >= 2<<20 })
		cmd.Process.Kill()
		cmd.Wait()
		if !strings.Contains(out.String(), "uploading cli-upload.qcow2 (4.0 MiB)") {
			t.Errorf("the first run does not say what it uploads:\n%s", out.String())
		}

		sent := link.BodyBytes()
		r := cli(t, env, append(args, "--wait")...)
		if r.code != 0 {
			t.Fatalf("the second run: %s", r)
		}
		if !regexp.MustCompile(`resuming the upload at [1-9]`).MatchString(r.stderr) {
			t.Errorf("the second run does not resume from the server's bytes:\n%s", r.stderr)
		}
		if again := link.BodyBytes() - sent; again >= int64(len(data)) {
			t.Errorf("the second run sent %d bytes of a %d-byte file: it started over", again, len(data))
		}
		m := regexp.MustCompile(`image (\S+) READY at `).FindStringSubmatch(r.stdout)
		if m == nil {
			t.Fatalf("stdout does not say the image is READY:\n%s", r)
		}
		checkUploaded(t, getImage(t, s, m[1]), data, true)
	})

	t.Run("images rm removes a READY image and its file", func(t *testing.T) {
		r := cli(t, env, "images", "rm", ready.ID)
		if r.code != 0 || !strings.Contains(r.stdout, ready.ID+": removed") {
			t.Fatalf("images rm: %s", r)
		}
		if _, err := os.Stat(ready.Path); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("the removed image's file %s: %v, want it gone", ready.Path, err)
		}
		if r := cli(t, env, "images", "get", ready.ID); r.code != 1 || !strings.HasPrefix(r.stderr, "not_found: ") {
			t.Errorf("get after rm: want not_found:\n%s", r)
		}
	})

	t.Run("completion offers the API's pools and images", func(t *testing.T) {
		r := cli(t, env, "__complete", "images", "pull", "cirros", "--pool", "")
		for _, p := range []string{"shared", "local-1", "local-2"} {
			if r.code != 0 || !regexp.MustCompile(`(?m)^`+p+`\t`).MatchString(r.stdout) {
				t.Errorf("completing --pool lacks %s:\n%s", p, r)
			}
		}
		r = cli(t, env, "__complete", "images", "get", "")
		if r.code != 0 || !strings.Contains(r.stdout, failed.ID+"\t") {
			t.Errorf("completing an image id lacks %s:\n%s", failed.ID, r)
		}
	})
}

// TestCLIReportsAnAPIItCannotReach: no API at the address, the error says
// where it looked and how to give another.
func TestCLIReportsAnAPIItCannotReach(t *testing.T) {
	env := []string{"PATH=" + os.Getenv("PATH"), "CLOUDIMAGES_API_URL=http://127.0.0.1:" + strconv.Itoa(testenv.FreePort(t))}
	r := cli(t, env, "images", "ls")
	if r.code != 1 || !strings.Contains(r.stderr, "cannot reach the API at http://127.0.0.1:") || !strings.Contains(r.stderr, "--api-url") {
		t.Errorf("images ls with no API: %s", r)
	}
	r = cli(t, env, "images", "ls", "--api-url", "127.0.0.1:8080")
	if r.code != 2 || !strings.Contains(r.stderr, "want the API's base URL") {
		t.Errorf("images ls with an --api-url that is no URL: want exit 2:\n%s", r)
	}
}

// TestCLIUsageErrorsExit2: a missing argument or flag is a usage error.
func TestCLIUsageErrorsExit2(t *testing.T) {
	env := []string{"PATH=" + os.Getenv("PATH"), "CLOUDIMAGES_API_URL=http://127.0.0.1:1"}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"images", "pull", "cirros-0.6.3"}, "--pool is required"},
		{[]string{"images", "get"}, "want the image's ID"},
		{[]string{"images", "ls", "-o", "yaml"}, `-o "yaml": want table or json`},
		{[]string{"images", "ls", "--pool"}, "flag needs an argument"},
		{[]string{"images", "frobnicate"}, `unknown command "frobnicate"`},
		{[]string{"images", "upload", "/no/such/file", "--pool", "p"}, "no such file"},
		{[]string{"pools", "ls", "--api-token", "a-token-0123456789", "--api-token-file", "/x"}, "give one of them"},
		{[]string{"dist", "create", "cirros-0.6.3"}, "--pool P"},
		{[]string{"dist", "create", "cirros-0.6.3", "--pool", "p1", "--all-pools"}, "not both"},
		{[]string{"dist", "create", "https://mirror.example/x.qcow2", "--pool", "p1"}, "--checksum is required with a URL"},
		{[]string{"distributions", "get"}, "want the distribution's ID"},
	} {
		r := cli(t, env, tc.args...)
		if r.code != 2 || !strings.Contains(r.stderr, tc.want) || !strings.Contains(r.stderr, "--help") {
			t.Errorf("%v: want exit 2 saying %q and pointing to --help:\n%s", tc.args, tc.want, r)
		}
	}
}

// TestCLICompletionScripts: each shell gets a script that names the binary.
func TestCLICompletionScripts(t *testing.T) {
	env := []string{"PATH=" + os.Getenv("PATH")}
	for shell, want := range map[string]string{
		"bash": "__start_cloudimages",
		"zsh":  "#compdef cloudimages",
		"fish": "complete -c cloudimages",
	} {
		r := cli(t, env, "completion", shell)
		if r.code != 0 || !strings.Contains(r.stdout, want) {
			t.Errorf("completion %s: want a script with %q: exit %d, %d bytes\n%s", shell, want, r.code, len(r.stdout), r.stderr)
		}
	}
}

// slowLink is a reverse proxy to the API that passes request bodies at
// about rate bytes a second: a slow network between a client and the API.
type slowLink struct {
	srv  *httptest.Server
	body atomic.Int64
}

func newSlowLink(t *testing.T, target string, rate int64) *slowLink {
	t.Helper()
	u, err := url.Parse(target)
	if err != nil {
		t.Fatal(err)
	}
	proxy := httputil.NewSingleHostReverseProxy(u)
	l := &slowLink{}
	l.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Body != nil && r.ContentLength != 0 {
			r.Body = &trickle{ReadCloser: r.Body, rate: rate, n: &l.body}
		}
		proxy.ServeHTTP(w, r)
	}))
	t.Cleanup(l.srv.Close)
	return l
}

func (l *slowLink) URL() string { return l.srv.URL }

// BodyBytes is how many request body bytes went through so far.
func (l *slowLink) BodyBytes() int64 { return l.body.Load() }

type trickle struct {
	io.ReadCloser
	rate int64
	n    *atomic.Int64
}

func (t *trickle) Read(p []byte) (int, error) {
	p = p[:min(len(p), 32<<10)]
	n, err := t.ReadCloser.Read(p)
	t.n.Add(int64(n))
	time.Sleep(time.Duration(int64(n) * int64(time.Second) / t.rate))
	return n, err
}
