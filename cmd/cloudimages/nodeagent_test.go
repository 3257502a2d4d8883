package main_test

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/quantix/cloudimages/internal/testenv"
	"github.com/quantix/cloudimages/nodeagent/agentclient"
)

// TestNodeAgentQemuImg starts real agent processes: one pointed by
// --qemu-img at a path where there is none says so in its log at start
// and in /v1/health (no "convert" feature, qemu_img.missing naming the
// path and qemu-utils); CLOUDIMAGES_QEMU_IMG does the same, and the flag
// wins over it; without either, qemu-img is found on PATH.
func TestNodeAgentQemuImg(t *testing.T) {
	real, err := exec.LookPath("qemu-img")
	if err != nil {
		t.Fatal("qemu-img is missing: run `make test-deps` (Debian's qemu-utils)")
	}
	missing := filepath.Join(t.TempDir(), "no", "qemu-img")
	for _, c := range []struct {
		name string
		args []string
		env  []string
		want string // the path health names; "" when qemu-img is missing
	}{
		{"flag at a missing path", []string{"--qemu-img", missing}, nil, ""},
		{"variable at a missing path", nil, []string{"CLOUDIMAGES_QEMU_IMG=" + missing}, ""},
		{"flag wins over the variable", []string{"--qemu-img", real}, []string{"CLOUDIMAGES_QEMU_IMG=" + missing}, real},
		{"default: qemu-img on PATH", nil, nil, real},
	} {
		t.Run(c.name, func(t *testing.T) {
			a := testenv.StartAgent(t, testenv.AgentOptions{Args: c.args, Env: c.env})
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			h, err := a.Client().Health(ctx)
			if err != nil {
				t.Fatalf("health: %v", err)
			}
			if h.QemuImg == nil {
				t.Fatalf("health has no qemu_img: %+v", h)
			}
			converts := h.Supports(agentclient.FeatureConvert)
			if c.want != "" {
				if h.QemuImg.Path != c.want || h.QemuImg.Missing != "" || !converts {
					t.Errorf("health qemu_img %+v, features %v; want path %s and %q", *h.QemuImg, h.Features, c.want, agentclient.FeatureConvert)
				}
				return
			}
			if h.QemuImg.Path != "" || converts || !strings.Contains(h.QemuImg.Missing, missing) || !strings.Contains(h.QemuImg.Missing, "qemu-utils") {
				t.Errorf("health qemu_img %+v, features %v; want it missing, naming %s and qemu-utils, and no %q", *h.QemuImg, h.Features, missing, agentclient.FeatureConvert)
			}
			log, err := os.ReadFile(a.LogPath())
			if err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(string(log), "qemu-img not found") || !strings.Contains(string(log), "--qemu-img") {
				t.Errorf("the agent's log does not say at start that qemu-img is missing and what to do:\n%s", log)
			}
		})
	}
}
