package nodeagent_test

import (
	"errors"
	"net/http"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/quantix/cloudimages/internal/testenv"
	"github.com/quantix/cloudimages/nodeagent/agentclient"
	"github.com/quantix/cloudimages/nodeauth"
)

// TestScopedTokenOpensOneRequestOfARealAgent: a token the worker mints
// from an agent's credential for GET of one file opens that request only,
// and only until it expires; one minted from another node's credential
// opens nothing.
func TestScopedTokenOpensOneRequestOfARealAgent(t *testing.T) {
	const secret = "cluster-secret-for-scoped-tokens"
	agent := testenv.StartAgent(t, testenv.AgentOptions{NodeID: "node-1", Token: nodeauth.Credential(secret, "node-1")})
	cred := agent.Token()
	const file = "/v1/pools/pool-1/files/f.qcow2"
	soon := time.Now().Add(time.Minute)
	tok := nodeauth.Mint(cred, http.MethodGet, file, soon)

	if status, body := rawRequest(t, http.MethodGet, agent.URL()+file, tok, ""); status == http.StatusUnauthorized {
		t.Fatalf("GET %s with its scoped token: 401 %s", file, body)
	}
	refused := []struct {
		name, method, path, token string
	}{
		{"another path", http.MethodGet, "/v1/pools/pool-1/files/g.qcow2", tok},
		{"another route", http.MethodGet, "/v1/health", tok},
		{"another method", http.MethodDelete, file, tok},
		{"a longer path", http.MethodGet, file + "/x", tok},
		{"expired", http.MethodGet, file, nodeauth.Mint(cred, http.MethodGet, file, time.Now().Add(-time.Second))},
		{"minted by another node", http.MethodGet, file, nodeauth.Mint(nodeauth.Credential(secret, "node-2"), http.MethodGet, file, soon)},
		{"minted from the cluster secret", http.MethodGet, file, nodeauth.Mint(secret, http.MethodGet, file, soon)},
		{"another node's credential", http.MethodGet, "/v1/health", nodeauth.Credential(secret, "node-2")},
		{"the cluster secret", http.MethodGet, "/v1/health", secret},
	}
	for _, r := range refused {
		if status, body := rawRequest(t, r.method, agent.URL()+r.path, r.token, ""); status != http.StatusUnauthorized || !strings.Contains(body, `"code":"unauthorized"`) {
			t.Errorf("%s (%s %s): %d %s; want 401", r.name, r.method, r.path, status, body)
		}
	}

	// A token that works now stops working when it expires, by the
	// agent's own clock.
	short := nodeauth.Mint(cred, http.MethodGet, "/v1/health", time.Now().Add(2*time.Second))
	if status, body := rawRequest(t, http.MethodGet, agent.URL()+"/v1/health", short, ""); status != http.StatusOK {
		t.Fatalf("GET /v1/health with a fresh scoped token: %d %s", status, body)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		status, body := rawRequest(t, http.MethodGet, agent.URL()+"/v1/health", short, "")
		if status == http.StatusUnauthorized && strings.Contains(body, "expired") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("scoped token still answers %d %s 10s after it expired", status, body)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestAgentServesTLS: with --tls-cert and --tls-key the agent serves
// HTTPS; a client that trusts the CA reaches it, one that does not is told
// to give --agent-ca-file, and a plain-HTTP client gets nowhere.
func TestAgentServesTLS(t *testing.T) {
	ca := testenv.NewAgentCA(t)
	agent := testenv.StartAgent(t, testenv.AgentOptions{
		Args:      []string{"--tls-cert", ca.CertFile, "--tls-key", ca.KeyFile},
		ClientTLS: ca.ClientTLS,
	})
	if _, err := agent.Client().Health(ctx(t)); err != nil {
		t.Fatalf("client trusting the CA: %v", err)
	}
	// The same over an explicit https:// address.
	if _, err := agentclient.New(agent.URL(), agent.Token(), agentclient.WithTLS(ca.ClientTLS)).Health(ctx(t)); err != nil {
		t.Fatalf("client trusting the CA, https address: %v", err)
	}
	_, err := agentclient.New(agent.URL(), agent.Token()).Health(ctx(t))
	if err == nil || !strings.Contains(err.Error(), "not trusted") || !strings.Contains(err.Error(), "--agent-ca-file") {
		t.Fatalf("client without the CA: %v; want a message about --agent-ca-file", err)
	}
	if _, err := agentclient.New(agent.Address(), agent.Token()).Health(ctx(t)); err == nil {
		t.Fatal("a plain-HTTP client reached the TLS agent")
	}
}

func TestAgentRefusesHalfATLSSetting(t *testing.T) {
	for _, args := range [][]string{{"--tls-cert", "c.pem"}, {"--tls-key", "k.pem"}} {
		cmd := exec.Command(testenv.Binary(t), append([]string{"nodeagent", "--node-id", "n", "--node-token", nodeauth.Credential("s", "n"),
			"--pool", "p=" + t.TempDir(), "--listen", "127.0.0.1:0"}, args...)...)
		out, err := cmd.CombinedOutput()
		var exit *exec.ExitError
		if !errors.As(err, &exit) || exit.ExitCode() != 2 || !strings.Contains(string(out), "--tls-cert and --tls-key go together") {
			t.Errorf("nodeagent %v: %v\n%s", args, err, out)
		}
	}
}
