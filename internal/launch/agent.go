package launch

import (
	"context"
	"crypto/tls"
	"strconv"
	"time"

	"github.com/quantix/cloudimages/nodeagent"
	"github.com/quantix/cloudimages/nodeagent/agentclient"
)

// Agent is a node agent (`cloudimages nodeagent`). Token is the agent's
// own credential (nodeauth.Credential of the cluster secret and NodeID).
type Agent struct {
	Bin    string // the cloudimages binary
	NodeID string
	Listen string // host:port
	Token  string // the agent's bearer token
	Pools  []nodeagent.PoolDir
	// MaxConcurrent is the agent's --max-concurrent; 0: its own default.
	MaxConcurrent int
	// AllowPrivateNetworks lets the agent download from loopback and
	// private addresses (a mirror on the LAN, a test's upstream).
	AllowPrivateNetworks bool
	Args                 []string // extra flags
	Env                  []string // extra environment
	// ClientTLS, when set, is how Client reaches an agent that serves
	// HTTPS (Args then carry --tls-cert and --tls-key).
	ClientTLS *tls.Config
}

// Command returns the agent's arguments and environment. This is the one
// place that hands an agent its token: through the environment, where ps
// does not show it.
func (a *Agent) Command() (args, env []string) {
	args = []string{"nodeagent", "--node-id", a.NodeID, "--listen", a.Listen}
	for _, p := range a.Pools {
		args = append(args, "--pool", p.ID+"="+p.Dir)
	}
	if a.MaxConcurrent > 0 {
		args = append(args, "--max-concurrent", strconv.Itoa(a.MaxConcurrent))
	}
	if a.AllowPrivateNetworks {
		args = append(args, "--allow-private-networks")
	}
	// The token files are emptied: a file named in our own environment
	// would clash with the token given here.
	env = append([]string{"CLOUDIMAGES_NODE_TOKEN=" + a.Token, "CLOUDIMAGES_NODE_TOKEN_FILE=", "CLOUDIMAGES_API_TOKEN_FILE="}, a.Env...)
	return append(args, a.Args...), env
}

// Client returns a client of the agent, with its token.
func (a *Agent) Client() *agentclient.Client {
	return agentclient.New(a.Listen, a.Token, agentclient.WithTLS(a.ClientTLS))
}

// URL returns the agent's base URL.
func (a *Agent) URL() string {
	if a.ClientTLS != nil {
		return "https://" + a.Listen
	}
	return "http://" + a.Listen
}

// Process returns the agent's process, logging to logPath and ready when
// GET /v1/health answers at a.Listen. After a change of a (a new port),
// Apply it before the next start.
func (a *Agent) Process(name, logPath string) *Process {
	p := &Process{Name: name, Path: a.Bin, LogPath: logPath, ReadyTimeout: 30 * time.Second}
	p.Ready = func(ctx context.Context, _ int) error {
		_, err := a.Client().Health(ctx)
		return err
	}
	a.Apply(p)
	return p
}

// Apply sets p's command line and environment from a.
func (a *Agent) Apply(p *Process) { p.Args, p.Env = a.Command() }
