package activities_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/quantix/cloudimages/activities"
	"github.com/quantix/cloudimages/credentials"
	"github.com/quantix/cloudimages/fault"
	"github.com/quantix/cloudimages/nodeagent/agentclient"
	"github.com/quantix/cloudimages/source"
)

func testCredentials(t *testing.T, host string) *credentials.Set {
	t.Helper()
	path := filepath.Join(t.TempDir(), "c.yaml")
	if err := os.WriteFile(path, []byte("vendor:\n  host: "+host+"\n  headers:\n    X-Api-Key: k3y\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	set, err := credentials.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	return set
}

// TestStartOnNodeSendsAnAgentWhatItSupports: mirrors and the credential's
// secret go to an agent that names their features; an older agent gets
// the first URL only, and a download that needs a credential fails over
// from an agent that cannot take one.
func TestStartOnNodeSendsAnAgentWhatItSupports(t *testing.T) {
	agent := newFakeAgent(t, "node-1", "pool-1")
	b := newBench(t, false, agent)
	b.acts.Credentials = testCredentials(t, "example.com")
	j := job("node-1", false)
	j.Mirrors = []string{"https://mirror.example.org/x.qcow2"}

	if _, err := b.env.ExecuteActivity(b.acts.StartOnNode, j); err != nil {
		t.Fatal(err)
	}
	if got := agent.started(); len(got) != 1 || got[0].URL != j.URL || len(got[0].Mirrors) != 0 || got[0].Credential != nil {
		t.Fatalf("an agent without the features got %+v; want the first URL only", got)
	}

	j.NodeFeatures = []string{agentclient.FeatureMirrors, agentclient.FeatureSourceCredentials}
	j.Credential = "vendor"
	if _, err := b.env.ExecuteActivity(b.acts.StartOnNode, j); err != nil {
		t.Fatal(err)
	}
	got := agent.started()[1]
	if len(got.Mirrors) != 1 || got.Mirrors[0] != j.Mirrors[0] || got.Credential == nil || got.Credential.Headers["X-Api-Key"] != "k3y" || got.Credential.Host != "example.com" {
		t.Fatalf("an agent with the features got %+v; want the mirrors and the credential with its secret", got)
	}

	j.NodeFeatures = []string{agentclient.FeatureMirrors}
	_, err := b.env.ExecuteActivity(b.acts.StartOnNode, j)
	if typ, _ := errorType(t, err); typ != activities.FailoverError || !strings.Contains(err.Error(), "source credentials") {
		t.Fatalf("credential to an agent without the feature: %v; want a failover that says why", err)
	}
}

func TestResolveSourceChecksTheCredential(t *testing.T) {
	b := newBench(t, false)
	b.acts.Credentials = testCredentials(t, "example.com")
	req := source.Request{CatalogID: "x", PoolID: "pool-1", Credential: "vendor"}
	v, err := b.env.ExecuteActivity(b.acts.ResolveSource, req)
	if err != nil {
		t.Fatal(err)
	}
	var src source.Source
	if err := v.Get(&src); err != nil || src.Credential != "vendor" {
		t.Fatalf("source %+v, %v; want it to carry the credential's name", src, err)
	}
	for _, tc := range []struct {
		creds *credentials.Set
		name  string
		want  string
	}{
		{b.acts.Credentials, "nobody", `no source credential "nobody" on the worker (it knows: vendor)`},
		{nil, "vendor", "start the worker with --credentials"},
		{testCredentials(t, "elsewhere.example"), "vendor", "is for host elsewhere.example"},
	} {
		b.acts.Credentials = tc.creds
		req.Credential = tc.name
		_, err := b.env.ExecuteActivity(b.acts.ResolveSource, req)
		if typ, nonRetryable := errorType(t, err); typ != fault.InvalidRequest || !nonRetryable || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("credential %q: %v; want a fatal invalid_request saying %q", tc.name, err, tc.want)
		}
		if err != nil && strings.Contains(err.Error(), "k3y") {
			t.Errorf("the error shows the secret: %v", err)
		}
	}
}
