package main

import (
	"slices"
	"strings"
	"testing"
)

// TestDevAgentsAndTheirAddresses: --agents N starts N agents on ports
// 9091 up unless --agent-listen names them, one address per agent.
func TestDevAgentsAndTheirAddresses(t *testing.T) {
	cases := []struct {
		name   string
		agents int
		listen string
		want   []string
		err    string
	}{
		{"the default two", 2, "", []string{"127.0.0.1:9091", "127.0.0.1:9092"}, ""},
		{"six", 6, "", []string{"127.0.0.1:9091", "127.0.0.1:9092", "127.0.0.1:9093", "127.0.0.1:9094", "127.0.0.1:9095", "127.0.0.1:9096"}, ""},
		{"one", 1, "", []string{"127.0.0.1:9091"}, ""},
		{"addresses given", 3, "127.0.0.1:7001, 127.0.0.1:7002,127.0.0.1:7003", []string{"127.0.0.1:7001", "127.0.0.1:7002", "127.0.0.1:7003"}, ""},
		{"fewer addresses than agents", 3, "127.0.0.1:7001,127.0.0.1:7002", nil, "want 3 host:port"},
		{"more addresses than agents", 2, "127.0.0.1:7001,127.0.0.1:7002,127.0.0.1:7003", nil, "want 2 host:port"},
		{"no agents", 0, "", nil, "--agents 0"},
		{"too many agents", maxDevAgents + 1, "", nil, "want between 1 and 64"},
		{"a bad address", 1, "7001", nil, `"7001": want host:port`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			cfg := devConfig{agents: c.agents, listen: "127.0.0.1:8080", temporalAddress: "127.0.0.1:7233", temporalUIPort: 8233, dataDir: t.TempDir()}
			err := cfg.parse(c.listen)
			if c.err != "" {
				if err == nil || !strings.Contains(err.Error(), c.err) {
					t.Fatalf("error %v, want one saying %q", err, c.err)
				}
				return
			}
			if err != nil || !slices.Equal(cfg.agentListen, c.want) {
				t.Fatalf("addresses %v, %v; want %v", cfg.agentListen, err, c.want)
			}
		})
	}
}

// TestDevLayoutGivesEachAgentALocalPool: node-K serves local-K; node-1
// and node-2 share shared-nfs, whatever the number of agents.
func TestDevLayoutGivesEachAgentALocalPool(t *testing.T) {
	for _, n := range []int{1, 2, 6} {
		nodes, pools := devLayout(n)
		if len(nodes) != n || len(pools) != n+1 {
			t.Fatalf("%d agents: nodes %v, %d pools", n, nodes, len(pools))
		}
		for i, p := range pools[:n] {
			if p.Shared || p.ID != "local-"+nodes[i][len("node-"):] || !slices.Equal(p.NodeIDs, []string{nodes[i]}) {
				t.Errorf("%d agents: pool %d is %+v, want %s's local pool", n, i, p, nodes[i])
			}
		}
		shared := pools[n]
		if want := nodes[:min(n, 2)]; shared.ID != "shared-nfs" || !shared.Shared || !slices.Equal(shared.NodeIDs, want) {
			t.Errorf("%d agents: shared pool %+v, want shared-nfs on %v", n, shared, want)
		}
	}
}
