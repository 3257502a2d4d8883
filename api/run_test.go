package api_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/quantix/cloudimages/api"
	"github.com/quantix/cloudimages/internal/testenv"
)

// client is a bare HTTP client of a running API.
type httpClient struct {
	t    *testing.T
	base string
}

func (c httpClient) status(method, path, body string) int {
	c.t.Helper()
	req, _ := http.NewRequest(method, c.base+path, strings.NewReader(body))
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0
	}
	resp.Body.Close()
	return resp.StatusCode
}

func TestRunServesAndShutsDownWhenTheContextEnds(t *testing.T) {
	listen := fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() {
		done <- api.Run(ctx, api.Config{Listen: listen, TemporalAddress: temporalAddr, TemporalNamespace: "default",
			DatabaseURL: testenv.SQLite(t), Version: "test"})
	}()
	c := httpClient{t, "http://" + listen}
	eventually(t, 30*time.Second, "the API answers /healthz", func() bool { return c.status("GET", "/healthz", "") == 200 })
	pool := "p-run-" + randSuffix()
	a := startAgent(t, "n1", map[string]string{pool: t.TempDir()})
	if s := c.status("POST", "/v1/nodes", `{"id": "n1", "address": "`+a.address()+`"}`); s != 201 {
		t.Fatalf("POST /v1/nodes: %d", s)
	}
	if s := c.status("POST", "/v1/pools", `{"id": "`+pool+`", "type": "nfs", "node_ids": ["n1"]}`); s != 201 {
		t.Fatalf("POST /v1/pools: %d", s)
	}
	resp, err := http.Post(c.base+"/v1/images", "application/json", strings.NewReader(`{"catalog_id": "cirros-0.6.3", "pool_id": "`+pool+`"}`))
	if err != nil {
		t.Fatal(err)
	}
	var img image
	if err := json.NewDecoder(resp.Body).Decode(&img); err != nil || resp.StatusCode != 202 {
		t.Fatalf("POST /v1/images: %d %v", resp.StatusCode, err)
	}
	resp.Body.Close()
	// An open events stream does not hold the shutdown up: it ends.
	stream, err := http.Get(c.base + "/v1/images/" + img.ID + "/events")
	if err != nil || stream.StatusCode != 200 {
		t.Fatalf("events: %v", err)
	}
	streamEnded := make(chan struct{})
	go func() {
		defer close(streamEnded)
		io.Copy(io.Discard, stream.Body)
		stream.Body.Close()
	}()

	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Run: %v", err)
		}
	case <-time.After(25 * time.Second):
		t.Fatal("Run did not return after its context ended")
	}
	select {
	case <-streamEnded:
	case <-time.After(5 * time.Second):
		t.Error("the events stream is still open after Run returned")
	}
	if s := c.status("GET", "/healthz", ""); s != 0 {
		t.Errorf("the API still answers after Run returned: %d", s)
	}
}

func TestAPIProcessStopsCleanlyOnSIGTERM(t *testing.T) {
	bin := testenv.Binary(t)
	listen := fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
	cmd := exec.Command(bin, "api", "--listen", listen, "--temporal-address", temporalAddr,
		"--database-url", testenv.SQLite(t), "--api-token", "api-token-0123456789")
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			cmd.Process.Kill()
			<-exited
		}
		if t.Failed() {
			t.Logf("api output:\n%s", out.String())
		}
	})
	c := httpClient{t, "http://" + listen}
	eventually(t, 30*time.Second, "the API process answers /healthz", func() bool { return c.status("GET", "/healthz", "") == 200 })
	if s := c.status("GET", "/v1/nodes", ""); s != 401 {
		t.Errorf("GET /v1/nodes without the token: %d, want 401", s)
	}
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-exited:
		if err != nil {
			t.Fatalf("the API exited with %v after SIGTERM", err)
		}
	case <-time.After(25 * time.Second):
		t.Fatal("the API did not exit after SIGTERM")
	}
	if !strings.Contains(out.String(), "API stopped") {
		t.Errorf("no clean stop in the log:\n%s", out.String())
	}
}
