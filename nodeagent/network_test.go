package nodeagent_test

import (
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/quantix/cloudimages/fault"
	"github.com/quantix/cloudimages/internal/testenv"
	"github.com/quantix/cloudimages/nodeagent/agentclient"
)

// proxyPassword is the proxy's password in these tests: it must never
// show in the agent's log, its errors or its --help.
const proxyPassword = "s3cret-proxy-pass"

// TestAgentDownloadsThroughProxy: an agent process with --proxy (which
// asks for credentials) and without --allow-private-networks downloads a
// mirror at a public address over http (a forwarded GET) and over https
// (a CONNECT tunnel, the mirror's certificate from a private CA given
// with --ca-file). The proxy carries both; its password shows nowhere.
func TestAgentDownloadsThroughProxy(t *testing.T) {
	ca := testenv.NewCA(t, "127.0.0.1", testenv.PublicIP)
	plain, tlsUp := testenv.NewUpstream(t), testenv.NewTLSUpstream(t, ca)
	data := testenv.QCOW2Image(3<<20, 71)
	plain.AddFile("p.qcow2", data)
	tlsUp.AddFile("p.qcow2", data)
	for _, tc := range []struct {
		scheme string
		up     *testenv.Upstream
		asked  string
	}{
		{"http", plain, "GET http://" + testenv.PublicIP + "/p.qcow2"},
		{"https", tlsUp, "CONNECT " + testenv.PublicIP + ":443"},
	} {
		t.Run(tc.scheme, func(t *testing.T) {
			proxy := testenv.NewProxy(t, testenv.ProxyOptions{User: "agent", Password: proxyPassword, Route: tc.up.Addr()})
			agent := testenv.StartAgent(t, testenv.AgentOptions{Args: []string{"--ca-file", ca.CAFile},
				Env: []string{"CLOUDIMAGES_PROXY=" + proxy.URL()}})
			c := agent.Client()
			req := agentclient.DownloadRequest{ID: "via-proxy", URL: tc.scheme + "://" + testenv.PublicIP + "/p.qcow2",
				PoolID: "pool-1", FileName: "p.qcow2", Checksum: testenv.SHA256(data)}
			if _, err := c.StartDownload(ctx(t), req); err != nil {
				t.Fatal(err)
			}
			d := waitFinished(t, c, req.ID)
			assertPublished(t, d, agent.PoolDir("pool-1"), data, req.Checksum)
			if asked := proxy.Requests(); len(asked) == 0 || asked[0] != tc.asked || proxy.Refused() != 0 {
				t.Errorf("proxy was asked %q (%d refused); want %q with the credentials", asked, proxy.Refused(), tc.asked)
			}
			if tc.up.Requests("p.qcow2") == 0 {
				t.Error("the mirror behind the proxy got no request")
			}
			assertNoProxyPassword(t, agent.LogPath())
		})
	}
}

// TestAgentProxyFailuresAreClear: a proxy that wants other credentials,
// and one that is not there, fail the download with upstream_error saying
// it was the proxy, without its password.
func TestAgentProxyFailuresAreClear(t *testing.T) {
	ca := testenv.NewCA(t, "127.0.0.1", testenv.PublicIP)
	plain, tlsUp := testenv.NewUpstream(t), testenv.NewTLSUpstream(t, ca)
	data := testenv.QCOW2Image(4096, 72)
	plain.AddFile("x.qcow2", data)
	tlsUp.AddFile("x.qcow2", data)
	wrong := testenv.NewProxy(t, testenv.ProxyOptions{User: "agent", Password: "another-password", Route: plain.Addr()})
	gone := testenv.NewProxy(t, testenv.ProxyOptions{})
	goneURL := strings.Replace(gone.URL(), "http://", "http://agent:"+proxyPassword+"@", 1)
	gone.Close()
	cases := []struct {
		name, proxy, url, want string
	}{
		{"http wrong credentials", wrongCreds(wrong), "http://" + testenv.PublicIP + "/x.qcow2", "407"},
		{"https wrong credentials", wrongCreds(wrong), "https://" + testenv.PublicIP + "/x.qcow2", "407"},
		{"proxy not there", goneURL, "http://" + testenv.PublicIP + "/x.qcow2", "cannot reach the proxy"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			// The proxy in the environment: on the command line, ps would show its password.
			agent := testenv.StartAgent(t, testenv.AgentOptions{Args: []string{"--ca-file", ca.CAFile},
				Env: []string{"CLOUDIMAGES_PROXY=" + tc.proxy, "CLOUDIMAGES_RETRY_BACKOFF=10ms", "CLOUDIMAGES_MAX_ATTEMPTS=2"}})
			c := agent.Client()
			req := agentclient.DownloadRequest{ID: "bad-proxy", URL: tc.url, PoolID: "pool-1", FileName: "x.qcow2"}
			if _, err := c.StartDownload(ctx(t), req); err != nil {
				t.Fatal(err)
			}
			d := waitFinished(t, c, req.ID)
			if d.State != agentclient.StateFailed || d.Error == nil || d.Error.Code != fault.UpstreamError ||
				!strings.Contains(d.Error.Message, "proxy") || !strings.Contains(d.Error.Message, tc.want) {
				t.Fatalf("download %s %+v; want failed, upstream_error about the proxy saying %q", d.State, d.Error, tc.want)
			}
			if strings.Contains(d.Error.Message, proxyPassword) || strings.Contains(d.Error.Message, "another-password") {
				t.Errorf("the error shows the proxy's password: %s", d.Error.Message)
			}
			assertNoProxyPassword(t, agent.LogPath())
		})
	}
}

// wrongCreds is the proxy's URL with our password instead of the one it wants.
func wrongCreds(p *testenv.Proxy) string {
	return strings.Replace(p.URL(), "another-password", proxyPassword, 1)
}

// TestAgentRefusesForbiddenTargetBeforeProxy: through a proxy the agent
// still holds targets to the URL policy, before the proxy sees them: an
// internal address is refused at the request, and a public mirror that
// redirects to one gets the proxy only its own request.
func TestAgentRefusesForbiddenTargetBeforeProxy(t *testing.T) {
	up := testenv.NewUpstream(t)
	up.AddFile("r.qcow2", testenv.QCOW2Image(4096, 73))
	up.SetFault("r.qcow2", testenv.Fault{RedirectTo: "http://10.20.30.40/internal.qcow2"})
	proxy := testenv.NewProxy(t, testenv.ProxyOptions{Route: up.Addr()})
	agent := testenv.StartAgent(t, testenv.AgentOptions{Args: []string{"--proxy", proxy.URL()}})
	c := agent.Client()

	_, err := c.StartDownload(ctx(t), agentclient.DownloadRequest{ID: "literal", URL: "http://169.254.169.254/latest/meta-data", PoolID: "pool-1", FileName: "m.img"})
	if fe, ok := fault.As(err); !ok || fe.Code != fault.URLForbidden {
		t.Fatalf("metadata address through a proxy: %v; want url_forbidden", err)
	}
	req := agentclient.DownloadRequest{ID: "redirected", URL: "http://" + testenv.PublicIP + "/r.qcow2", PoolID: "pool-1", FileName: "r.qcow2"}
	if _, err := c.StartDownload(ctx(t), req); err != nil {
		t.Fatal(err)
	}
	d := waitFinished(t, c, req.ID)
	if d.State != agentclient.StateFailed || d.Error == nil || d.Error.Code != fault.URLForbidden || !strings.Contains(d.Error.Message, "10.20.30.40") {
		t.Fatalf("redirect to an internal address: %s %+v; want url_forbidden naming it", d.State, d.Error)
	}
	if asked := proxy.Requests(); len(asked) != 1 || !strings.Contains(asked[0], testenv.PublicIP) {
		t.Errorf("proxy was asked %q; want only the public mirror's request, never the internal target", asked)
	}
}

// TestAgentPrivateCA: an https mirror whose certificate a private CA
// signed fails without --ca-file, with an upstream_error that names the
// certificate problem and the flag; with --ca-file it downloads.
func TestAgentPrivateCA(t *testing.T) {
	ca := testenv.NewCA(t, "127.0.0.1")
	up := testenv.NewTLSUpstream(t, ca)
	data := testenv.QCOW2Image(1<<20, 74)
	url := up.AddFile("ca.qcow2", data)
	req := agentclient.DownloadRequest{ID: "ca", URL: url, PoolID: "pool-1", FileName: "ca.qcow2", Checksum: testenv.SHA256(data)}

	without := testenv.StartAgent(t, testenv.AgentOptions{AllowPrivateNetworks: true})
	if _, err := without.Client().StartDownload(ctx(t), req); err != nil {
		t.Fatal(err)
	}
	d := waitFinished(t, without.Client(), req.ID)
	if d.State != agentclient.StateFailed || d.Error == nil || d.Error.Code != fault.UpstreamError ||
		!strings.Contains(d.Error.Message, "certificate") || !strings.Contains(d.Error.Message, "--ca-file") {
		t.Fatalf("untrusted mirror: %s %+v; want upstream_error naming the certificate and --ca-file", d.State, d.Error)
	}

	with := testenv.StartAgent(t, testenv.AgentOptions{AllowPrivateNetworks: true, Env: []string{"CLOUDIMAGES_CA_FILE=" + ca.CAFile}})
	if _, err := with.Client().StartDownload(ctx(t), req); err != nil {
		t.Fatal(err)
	}
	assertPublished(t, waitFinished(t, with.Client(), req.ID), with.PoolDir("pool-1"), data, req.Checksum)
}

// TestAgentNetworkFlags: bad --proxy, --ca-file and --max-bandwidth
// values stop the agent with exit 2 and say why, without the proxy's
// password; --help documents them and hides a password from the
// environment.
func TestAgentNetworkFlags(t *testing.T) {
	bin := testenv.Binary(t)
	notPEM := t.TempDir() + "/not.pem"
	if err := os.WriteFile(notPEM, []byte("not a certificate"), 0o600); err != nil {
		t.Fatal(err)
	}
	base := []string{"nodeagent", "--node-id", "n", "--node-token", strings.Repeat("t", 20), "--pool=p=" + t.TempDir()}
	cases := []struct {
		args []string
		want string
	}{
		{[]string{"--proxy", "socks5://u:" + proxyPassword + "@proxy:1080"}, "only http:// and https:// proxies"},
		{[]string{"--proxy", "http://u:" + proxyPassword + "@"}, "has no host"},
		{[]string{"--ca-file", notPEM}, "holds no PEM certificate"},
		{[]string{"--ca-file", notPEM + ".missing"}, "no such file"},
		{[]string{"--max-bandwidth", "fast"}, "want a rate such as 50MB/s"},
		{[]string{"--max-bandwidth", "1KB/s"}, "below the smallest cap"},
	}
	for _, tc := range cases {
		var stderr strings.Builder
		cmd := exec.CommandContext(ctx(t), bin, append(base, tc.args...)...)
		cmd.Stderr = &stderr
		err := cmd.Run()
		var code int
		if cmd.ProcessState != nil {
			code = cmd.ProcessState.ExitCode()
		}
		if code != 2 || !strings.Contains(stderr.String(), tc.want) {
			t.Errorf("%v: %v, stderr %q; want exit 2 saying %q", tc.args, err, stderr.String(), tc.want)
		}
		if strings.Contains(stderr.String(), proxyPassword) {
			t.Errorf("%v: the error shows the proxy's password: %s", tc.args, stderr.String())
		}
	}
	cmd := exec.CommandContext(ctx(t), bin, "nodeagent", "--help")
	cmd.Env = append(os.Environ(), "CLOUDIMAGES_PROXY=http://agent:"+proxyPassword+"@proxy.example:3128")
	out, err := cmd.CombinedOutput()
	for _, want := range []string{"--proxy", "CLOUDIMAGES_PROXY", "--ca-file", "CLOUDIMAGES_CA_FILE", "--max-bandwidth", "CLOUDIMAGES_MAX_BANDWIDTH", "proxy.example:3128"} {
		if err != nil || !strings.Contains(string(out), want) {
			t.Errorf("nodeagent --help does not show %s (%v)", want, err)
		}
	}
	if strings.Contains(string(out), proxyPassword) {
		t.Errorf("nodeagent --help shows the proxy's password:\n%s", out)
	}
}

// assertNoSecret fails when the agent's log holds the proxy's password.
func assertNoProxyPassword(t *testing.T, logPath string) {
	t.Helper()
	log, err := os.ReadFile(logPath)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(log), proxyPassword) {
		t.Errorf("the agent's log holds the proxy's password")
	}
	if !strings.Contains(string(log), "proxy") {
		t.Errorf("the agent's log does not mention the proxy at all; want its (redacted) address")
	}
}
