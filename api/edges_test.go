package api_test

import (
	"context"
	"io"
	"net/http"
	"strings"
	"testing"
)

// rawPost sends body to path with the given headers and nothing else, the
// way a browser or a hand-written client would.
func (e *env) rawPost(path string, body io.Reader, header ...string) response {
	e.t.Helper()
	req, err := http.NewRequest("POST", e.http.URL+path, body)
	if err != nil {
		e.t.Fatal(err)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := e.http.Client().Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	return response{status: resp.StatusCode, header: resp.Header, body: data}
}

func (e *env) nodeCount() int {
	e.t.Helper()
	ns, err := e.store.Nodes(context.Background())
	if err != nil {
		e.t.Fatal(err)
	}
	return len(ns)
}

func TestAJSONBodyMustSayApplicationJSON(t *testing.T) {
	e := newEnv(t, testenvSQLite(t))
	node := `{"id": "n1", "address": "127.0.0.1:9090"}`
	cases := []struct {
		name string
		body io.Reader
	}{
		{"no Content-Type", strings.NewReader(node)},
		// A reader of unknown length goes chunked: a body all the same.
		{"chunked, no Content-Type", io.MultiReader(strings.NewReader(node))},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := e.rawPost("/v1/nodes", c.body)
			if r.status != http.StatusUnsupportedMediaType || r.errCode(t) != "unsupported_media_type" {
				t.Fatalf("status %d, want 415 unsupported_media_type: %s", r.status, r.body)
			}
			if !strings.Contains(string(r.body), "application/json") {
				t.Errorf("the message does not say what to send: %s", r.body)
			}
		})
	}
	if n := e.nodeCount(); n != 0 {
		t.Fatalf("%d nodes registered by refused requests", n)
	}
	// Bodiless requests stay as they were: no Content-Type needed.
	if r := e.rawPost("/v1/nodes", nil); r.status != http.StatusBadRequest || !strings.Contains(string(r.body), "empty") {
		t.Errorf("bodiless POST: %d %s, want 400 saying the body is empty", r.status, r.body)
	}
	if r := e.do("DELETE", "/v1/nodes/nope", nil); r.status != http.StatusNotFound {
		t.Errorf("bodiless DELETE: %d %s, want 404", r.status, r.body)
	}
	e.must(http.StatusCreated, "POST", "/v1/nodes", node, nil)
}

// TestCrossSiteRequestsAreRefused is the CSRF of the security review: a
// page on another site makes the operator's browser POST a node as
// text/plain (no preflight). It must be refused, and nothing registered.
func TestCrossSiteRequestsAreRefused(t *testing.T) {
	for _, token := range []string{"", "api-token-0123456789"} {
		name := "no token"
		if token != "" {
			name = "with token"
		}
		t.Run(name, func(t *testing.T) {
			e := newEnv(t, testenvSQLite(t), withToken(token))
			auth := "Bearer " + token
			node := `{"id": "evil", "address": "10.0.0.66:80"}`
			refused := []struct {
				name   string
				do     func() response
				origin string
			}{
				{"text/plain POST", func() response {
					return e.rawPost("/v1/nodes", strings.NewReader(node), "Origin", "http://evil.example", "Content-Type", "text/plain", "Authorization", auth)
				}, "http://evil.example"},
				{"JSON POST", func() response {
					return e.do("POST", "/v1/nodes", node, "Origin", "http://evil.example")
				}, ""},
				{"same host, other port", func() response {
					return e.do("POST", "/v1/nodes", node, "Origin", "http://127.0.0.1:1")
				}, ""},
				{"opaque origin", func() response { return e.do("POST", "/v1/nodes", node, "Origin", "null") }, ""},
				{"GET", func() response { return e.do("GET", "/v1/nodes", nil, "Origin", "https://evil.example") }, ""},
				{"DELETE", func() response { return e.do("DELETE", "/v1/nodes/x", nil, "Origin", "https://evil.example") }, ""},
				{"unknown route", func() response { return e.do("GET", "/v1/nope", nil, "Origin", "https://evil.example") }, ""},
			}
			for _, c := range refused {
				r := c.do()
				if r.status != http.StatusForbidden || r.errCode(t) != "forbidden" {
					t.Errorf("%s: status %d, want 403 forbidden: %s", c.name, r.status, r.body)
				}
			}
			if n := e.nodeCount(); n != 0 {
				t.Fatalf("%d nodes registered by cross-site requests", n)
			}
			// The web UI's own requests carry the API's origin and pass.
			r := e.do("POST", "/v1/nodes", node, "Origin", e.http.URL)
			if r.status != http.StatusCreated {
				t.Fatalf("same-origin POST: %d %s, want 201", r.status, r.body)
			}
			if r := e.do("GET", "/v1/nodes", nil, "Origin", strings.Replace(e.http.URL, "http://", "https://", 1)); r.status != http.StatusOK {
				t.Errorf("same host behind a TLS proxy: %d %s, want 200", r.status, r.body)
			}
		})
	}
}

func TestNodeAddressesThatAreNotAgentsAreRefused(t *testing.T) {
	e := newEnv(t, testenvSQLite(t))
	refused := map[string]string{
		"169.254.169.254:80":             "metadata",
		"http://169.254.169.254:80":      "metadata",
		"[fd00:ec2::254]:80":             "metadata",
		"metadata.google.internal:80":    "metadata",
		"METADATA.google.internal.:80":   "metadata",
		"[::ffff:169.254.169.254]:80":    "metadata",
		"169.254.1.1:9090":               "link-local",
		"[fe80::1]:9090":                 "link-local",
		"[fe80::1%25eth0]:9090":          "link-local",
		"224.0.0.1:9090":                 "multicast",
		"[ff02::1]:9090":                 "multicast",
		"0.0.0.0:9090":                   "unspecified",
		"[::]:9090":                      "unspecified",
		"255.255.255.255:9090":           "broadcast",
		"https://agent.example":          "port",
		"http://10.0.0.5":                "port",
		"https://user:pw@10.0.0.5:9090":  "host:port",
		"https://10.0.0.5:9090/path":     "host:port",
		"https://10.0.0.5:9090#fragment": "host:port",
		"10.0.0.5":                       "host:port",
		"ftp://10.0.0.5:21":              "host:port",
	}
	for addr, why := range refused {
		r := e.do("POST", "/v1/nodes", map[string]string{"address": addr})
		if r.status != http.StatusBadRequest || r.errCode(t) != "invalid_request" || !strings.Contains(string(r.body), why) {
			t.Errorf("address %s: %d %s, want 400 invalid_request mentioning %q", addr, r.status, r.body, why)
		}
	}
	if n := e.nodeCount(); n != 0 {
		t.Fatalf("%d nodes registered at refused addresses", n)
	}
	for _, addr := range []string{"127.0.0.1:9090", "[::1]:9090", "localhost:9090", "10.0.0.5:9090", "192.168.1.20:9090",
		"node-1:9090", "https://node-1.cluster.local:9443", "http://172.16.0.9:9090/", "[fd12::5]:9090"} {
		e.must(http.StatusCreated, "POST", "/v1/nodes", map[string]string{"address": addr}, nil)
	}
}
