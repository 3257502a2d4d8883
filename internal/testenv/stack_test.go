package testenv_test

import (
	"net/http"
	"slices"
	"testing"
	"time"

	"github.com/quantix/cloudimages/internal/testenv"
)

func TestStackRegistersNodesAndPools(t *testing.T) {
	s := testenv.StartStack(t, testenv.StackOptions{})
	var nodes struct {
		Items []struct {
			ID      string `json:"id"`
			Address string `json:"address"`
			Status  string `json:"status"`
		} `json:"items"`
	}
	// The workers' node health workflow checks the agents; the API shows
	// what it recorded.
	deadline := time.Now().Add(30 * time.Second)
	for {
		s.API.MustDo(t, http.MethodGet, "/v1/nodes", nil, &nodes, http.StatusOK)
		online := 0
		for _, n := range nodes.Items {
			if n.Status == "online" {
				online++
			}
		}
		if online == 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("nodes after 30s: %+v, want both online", nodes.Items)
		}
		time.Sleep(100 * time.Millisecond)
	}
	var ids []string
	for _, n := range nodes.Items {
		ids = append(ids, n.ID)
		if n.Address != s.Agent(n.ID).Address() {
			t.Errorf("node %s registered at %s, its agent listens on %s", n.ID, n.Address, s.Agent(n.ID).Address())
		}
	}
	slices.Sort(ids)
	if !slices.Equal(ids, []string{"node-1", "node-2"}) {
		t.Errorf("nodes = %v, want node-1 and node-2", ids)
	}
	var pool struct {
		Shared  bool     `json:"shared"`
		NodeIDs []string `json:"node_ids"`
	}
	s.API.MustDo(t, http.MethodGet, "/v1/pools/shared", nil, &pool, http.StatusOK)
	if !pool.Shared || len(pool.NodeIDs) != 2 {
		t.Errorf("pool shared = %+v, want shared on both nodes", pool)
	}
	if s.PoolDir("shared", "node-1") != s.PoolDir("shared", "node-2") {
		t.Error("the shared pool has two directories")
	}
	if s.PoolDir("local-1", "node-1") == s.PoolDir("local-2", "node-2") {
		t.Error("the local pools share a directory")
	}
	// A restarted worker polls again: Start waits for it.
	s.Workers[0].Kill()
	s.Workers[0].Start()
	if !s.Workers[0].Running() {
		t.Error("the worker does not run after a restart")
	}
}

func TestStackWithItsOwnPools(t *testing.T) {
	pools := []testenv.StackPool{{ID: "nfs", Shared: true, NodeIDs: []string{"node-1", "node-3"}}}
	s := testenv.StartStack(t, testenv.StackOptions{Agents: 3, Pools: pools})
	if pools[0].Dir != "" {
		t.Error("StartStack changed the caller's pools")
	}
	if s.PoolDir("nfs", "node-1") != s.PoolDir("nfs", "node-3") {
		t.Error("the shared pool has two directories")
	}
	var pool struct {
		NodeIDs []string `json:"node_ids"`
	}
	s.API.MustDo(t, http.MethodGet, "/v1/pools/nfs", nil, &pool, http.StatusOK)
	if !slices.Equal(pool.NodeIDs, []string{"node-1", "node-3"}) {
		t.Errorf("pool nfs on %v, want node-1 and node-3", pool.NodeIDs)
	}
	if got := len(s.Agents); got != 3 {
		t.Errorf("%d agents, want 3", got)
	}
	s.API.MustDo(t, http.MethodGet, "/v1/pools/shared", nil, nil, http.StatusNotFound)
}
