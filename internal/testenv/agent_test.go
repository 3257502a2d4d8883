package testenv

import (
	"errors"
	"net"
	"net/http"
	"testing"

	"github.com/quantix/cloudimages/internal/launch"
	"github.com/quantix/cloudimages/nodeagent"
)

func TestAgentProcessServesAndRestarts(t *testing.T) {
	a := StartAgent(t, AgentOptions{NodeID: "node-x"})
	h, err := a.Client().Health(t.Context())
	if err != nil || h.NodeID != "node-x" || len(h.Pools) != 1 || h.Pools[0].ID != "pool-1" {
		t.Fatalf("health: %+v %v", h, err)
	}
	a.Kill()
	if !a.Exited() {
		t.Fatal("Kill returned before the process exited")
	}
	a.Restart()
	if _, err := a.Client().Health(t.Context()); err != nil {
		t.Fatalf("after restart: %v", err)
	}
	resp, err := http.Get(a.URL() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("GET /metrics without the token: %d, want 401", resp.StatusCode)
	}
}

func TestAgentStartReportsATakenPort(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	a := newAgent(t, AgentOptions{NodeID: "n", Token: "token-0123456789abcdef", Pools: []nodeagent.PoolDir{{ID: "p", Dir: t.TempDir()}}})
	a.spec.Listen = l.Addr().String()
	a.spec.Apply(a.proc.p)
	if err := a.proc.p.Start(t.Context()); !errors.Is(err, launch.ErrPortTaken) {
		t.Fatalf("start on a taken port: %v; want launch.ErrPortTaken", err)
	}
}
