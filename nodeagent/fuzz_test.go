package nodeagent_test

import (
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"

	"github.com/quantix/cloudimages/checksum"
	"github.com/quantix/cloudimages/nodeagent"
	"github.com/quantix/cloudimages/nodeagent/agentclient"
)

// FuzzDownloadRequest feeds request bodies to the agent's validation:
// whatever it accepts must name a file inside the pool's images folder,
// an http(s) URL and a well-formed checksum. Seeds: testdata/fuzz.
func FuzzDownloadRequest(f *testing.F) {
	f.Add(`{"id":"img-1","url":"https://cloud-images.ubuntu.com/noble/current/noble-server-cloudimg-amd64.img","pool_id":"p","file_name":"noble.img","checksum":"sha256:` + strings.Repeat("0", 64) + `"}`)
	f.Add(`{"id":"a","url":"http://[::1]/x","pool_id":"p","file_name":"../../etc/passwd"}`)
	f.Add(`{"id":"a","url":"https://m.example/x","pool_id":"p","file_name":"x.qcow2","checksum":"SHA512:` + strings.Repeat("Ab", 64) + `","size_bytes":12,"format":"qcow2"}`)
	f.Fuzz(func(t *testing.T, body string) {
		var req agentclient.DownloadRequest
		if json.Unmarshal([]byte(body), &req) != nil {
			return
		}
		if err := nodeagent.ValidateRequest(&req, false); err != nil {
			if !strings.Contains(err.Error(), ": ") {
				t.Fatalf("error without a code and message: %v", err)
			}
			return
		}
		for _, name := range []string{req.ID, req.FileName} {
			pool := "/pools/p"
			images := filepath.Join(pool, agentclient.ImagesDir)
			p := filepath.Join(images, name)
			if filepath.Dir(p) != images || strings.ContainsAny(name, "/\\\x00") || strings.HasPrefix(name, ".") || strings.Contains(name, "..") {
				t.Fatalf("accepted name %q resolves to %s", name, p)
			}
		}
		if !strings.HasPrefix(req.URL, "http://") && !strings.HasPrefix(req.URL, "https://") {
			t.Fatalf("accepted URL %q", req.URL)
		}
		if req.Checksum != "" {
			sum, err := checksum.Parse(req.Checksum)
			if err != nil || sum.String() != req.Checksum {
				t.Fatalf("accepted checksum %q is not normalised (%v)", req.Checksum, err)
			}
		}
		if req.SizeBytes < 0 {
			t.Fatalf("accepted size %d", req.SizeBytes)
		}
		again := req
		if err := nodeagent.ValidateRequest(&again, false); err != nil || !again.Same(req) {
			t.Fatalf("validation is not stable: %v, %+v → %+v", err, req, again)
		}
	})
}
