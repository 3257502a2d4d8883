package launch

import (
	"context"
	"fmt"
	"net/http"
	"time"

	"github.com/quantix/cloudimages/api"
)

// ControlPlane is what the worker and the API share: where Temporal and
// the database are, and the tokens.
type ControlPlane struct {
	Bin             string // the cloudimages binary
	TemporalAddress string
	DatabaseURL     string
	NodeToken       string // the token the control plane sends to agents
	APIToken        string // required by the API when set
	Env             []string
}

func (c *ControlPlane) args() []string {
	return []string{"--temporal-address", c.TemporalAddress, "--temporal-namespace", "default", "--database-url", c.DatabaseURL}
}

// env passes the tokens through the environment, where ps does not show them.
func (c *ControlPlane) env() []string {
	// The token files are emptied: a file named in our own environment
	// would clash with the tokens given here.
	env := []string{"CLOUDIMAGES_NODE_TOKEN=" + c.NodeToken, "CLOUDIMAGES_NODE_TOKEN_FILE=", "CLOUDIMAGES_API_TOKEN_FILE="}
	if c.APIToken != "" {
		env = append(env, "CLOUDIMAGES_API_TOKEN="+c.APIToken)
	}
	return append(env, c.Env...)
}

// Worker returns a worker process, ready when it polls the task queue.
func (c *ControlPlane) Worker(name, logPath string, extra ...string) *Process {
	return &Process{Name: name, Path: c.Bin, LogPath: logPath,
		Args: append(append([]string{"worker"}, c.args()...), extra...), Env: c.env(),
		Ready: func(ctx context.Context, pid int) error { return WorkerPolls(ctx, c.TemporalAddress, pid) }}
}

// API returns the API's process, ready when GET /healthz answers 200. After
// a change of listen (a new port), ApplyAPI before the next start.
func (c *ControlPlane) API(logPath string) *Process {
	return &Process{Name: "api", Path: c.Bin, LogPath: logPath, Env: c.env()}
}

// ApplyAPI sets the API process's command line for listen and points its
// readiness check there; webURL (may be empty) is Temporal Web's.
func (c *ControlPlane) ApplyAPI(p *Process, listen, webURL string, extra ...string) {
	args := append([]string{"api", "--listen", listen}, c.args()...)
	if webURL != "" {
		args = append(args, "--temporal-web-url", webURL)
	}
	p.Args = append(args, extra...)
	client := &api.Client{BaseURL: "http://" + listen, Token: c.APIToken, Timeout: 2 * time.Second}
	p.Ready = func(ctx context.Context, _ int) error { return Healthy(ctx, client) }
}

// Healthy reports whether the API answers GET /healthz with 200.
func Healthy(ctx context.Context, c *api.Client) error {
	status, err := c.Do(ctx, http.MethodGet, "/healthz", nil, nil)
	if err == nil && status != http.StatusOK {
		err = fmt.Errorf("GET /healthz: %d", status)
	}
	return err
}
