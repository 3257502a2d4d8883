package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"go.temporal.io/api/enums/v1"
	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/client"

	"github.com/quantix/cloudimages/nodeagent/agentclient"
	"github.com/quantix/cloudimages/workflows"
)

// devNodes are the dev setup's node agents, in order of --agent-listen.
var devNodes = []string{"node-1", "node-2"}

// devPool is a pool of the dev setup.
type devPool struct {
	id     string
	shared bool
	nodes  []string
}

// devPools: a local pool on each node, and one pool both see, standing in
// for NFS.
var devPools = []devPool{
	{id: "local-1", nodes: []string{"node-1"}},
	{id: "local-2", nodes: []string{"node-2"}},
	{id: "shared-nfs", shared: true, nodes: []string{"node-1", "node-2"}},
}

// poolDir is where a pool lives on a node: a shared pool has one
// directory for all its nodes.
func (d *devRun) poolDir(p devPool, nodeID string) string {
	if p.shared {
		return filepath.Join(d.cfg.dataDir, "pools", p.id)
	}
	return filepath.Join(d.cfg.dataDir, "pools", nodeID, p.id)
}

func (d *devRun) databaseURL() string {
	return "sqlite:" + filepath.Join(d.cfg.dataDir, "cloudimages.db")
}

// prepare makes the data dir and reads (or makes) the node token, kept in
// the data dir so that the agents and the control plane of a later run agree.
func (d *devRun) prepare() error {
	self, err := os.Executable()
	if err != nil {
		return fmt.Errorf("find this binary to run the children: %w", err)
	}
	d.self = self
	if err := os.MkdirAll(filepath.Join(d.cfg.dataDir, "logs"), 0o755); err != nil {
		return fmt.Errorf("data dir: %w", err)
	}
	for _, p := range devPools {
		for _, n := range p.nodes {
			if err := os.MkdirAll(d.poolDir(p, n), 0o755); err != nil {
				return fmt.Errorf("pool dir: %w", err)
			}
		}
	}
	path := filepath.Join(d.cfg.dataDir, "node-token")
	if b, err := os.ReadFile(path); err == nil && len(strings.TrimSpace(string(b))) > 0 {
		d.nodeToken = strings.TrimSpace(string(b))
		return nil
	}
	b := make([]byte, 24)
	if _, err := rand.Read(b); err != nil {
		return err
	}
	d.nodeToken = hex.EncodeToString(b)
	if err := os.WriteFile(path, []byte(d.nodeToken+"\n"), 0o600); err != nil {
		return fmt.Errorf("node token: %w", err)
	}
	return nil
}

// childEnv is the environment every child gets on top of ours: the token
// goes through the environment, not the command line, where ps shows it.
// The token files are emptied: the children get the tokens they name.
func (d *devRun) childEnv() []string {
	env := []string{"CLOUDIMAGES_NODE_TOKEN=" + d.nodeToken, "CLOUDIMAGES_NODE_TOKEN_FILE=", "CLOUDIMAGES_API_TOKEN_FILE="}
	if d.cfg.apiToken != "" {
		env = append(env, "CLOUDIMAGES_API_TOKEN="+d.cfg.apiToken)
	}
	return env
}

// startTemporal uses the Temporal server at --temporal-address if one
// answers, else starts the dev server there with its state in the data dir.
func (d *devRun) startTemporal(ctx context.Context) error {
	if err := temporalAnswers(ctx, d.cfg.temporalAddress); err == nil {
		d.log.Info("using the Temporal server that answers", "address", d.cfg.temporalAddress)
		return nil
	}
	cli, err := findTemporalCLI(d.cfg.temporalCLI)
	if err != nil {
		return fmt.Errorf("%w; or start a Temporal server at %s (TEMPORAL_ADDRESS) yourself", err, d.cfg.temporalAddress)
	}
	host, port, _ := net.SplitHostPort(d.cfg.temporalAddress)
	args := []string{"server", "start-dev", "--ip", host, "--port", port,
		"--ui-port", strconv.Itoa(d.cfg.temporalUIPort),
		"--db-filename", filepath.Join(d.cfg.dataDir, "temporal.db"),
		"--log-level", "warn"}
	for _, name := range workflows.SearchAttributeNames {
		args = append(args, "--search-attribute", name+"=Keyword")
	}
	c, err := d.spawn("temporal", cli, args, nil)
	if err != nil {
		return err
	}
	if host == "" || host == "0.0.0.0" || host == "::" {
		host = "127.0.0.1"
	}
	d.webURL = "http://" + net.JoinHostPort(host, strconv.Itoa(d.cfg.temporalUIPort))
	return d.waitReady(ctx, c, 2*time.Minute, func(ctx context.Context) error {
		return temporalAnswers(ctx, d.cfg.temporalAddress)
	})
}

// temporalAnswers reports whether a Temporal frontend serves the default
// namespace at address.
func temporalAnswers(ctx context.Context, address string) error {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	c, err := client.DialContext(ctx, client.Options{HostPort: address, Logger: quietLogger{}})
	if err != nil {
		return err
	}
	defer c.Close()
	_, err = c.WorkflowService().DescribeNamespace(ctx, &workflowservice.DescribeNamespaceRequest{Namespace: "default"})
	return err
}

// findTemporalCLI returns the temporal CLI to run the dev server with: the
// one given, else the one `make tools` puts next to this binary in bin/,
// else ./bin/temporal.
func findTemporalCLI(given string) (string, error) {
	if given != "" {
		if _, err := os.Stat(given); err != nil {
			return "", fmt.Errorf("temporal CLI %s (--temporal-cli, CLOUDIMAGES_TEMPORAL_CLI): %w; run `make tools` to install the pinned one into bin/", given, err)
		}
		return given, nil
	}
	var tried []string
	if exe, err := os.Executable(); err == nil {
		tried = append(tried, filepath.Join(filepath.Dir(exe), "temporal"))
	}
	tried = append(tried, filepath.Join("bin", "temporal"))
	for _, p := range tried {
		if st, err := os.Stat(p); err == nil && !st.IsDir() {
			return filepath.Abs(p)
		}
	}
	return "", fmt.Errorf("no temporal CLI at %s: run `make tools` (or `make run`) to install the pinned one into bin/, or point --temporal-cli (CLOUDIMAGES_TEMPORAL_CLI) at one",
		strings.Join(tried, " or "))
}

func (d *devRun) startAgent(ctx context.Context, i int) error {
	node, addr := devNodes[i], d.cfg.agentListen[i]
	args := []string{"nodeagent", "--node-id", node, "--listen", addr,
		"--allow-private-networks=" + strconv.FormatBool(d.cfg.allowPrivate)}
	for _, p := range devPools {
		for _, n := range p.nodes {
			if n == node {
				args = append(args, "--pool", p.id+"="+d.poolDir(p, n))
			}
		}
	}
	c, err := d.spawn(node, d.self, args, d.childEnv())
	if err != nil {
		return err
	}
	agent := agentclient.New(addr, d.nodeToken)
	return d.waitReady(ctx, c, 30*time.Second, func(ctx context.Context) error {
		ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		defer cancel()
		_, err := agent.Health(ctx)
		return err
	})
}

func (d *devRun) controlPlaneArgs() []string {
	return []string{"--temporal-address", d.cfg.temporalAddress, "--temporal-namespace", "default", "--database-url", d.databaseURL()}
}

func (d *devRun) startWorker(ctx context.Context) error {
	c, err := d.spawn("worker", d.self, append([]string{"worker"}, d.controlPlaneArgs()...), d.childEnv())
	if err != nil {
		return err
	}
	return d.waitReady(ctx, c, time.Minute, func(ctx context.Context) error {
		return workerPolls(ctx, d.cfg.temporalAddress, c.cmd.Process.Pid)
	})
}

// workerPolls reports whether the worker with this pid polls the task
// queue: the SDK's default worker identity starts with "PID@".
func workerPolls(ctx context.Context, address string, pid int) error {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	c, err := client.DialContext(ctx, client.Options{HostPort: address, Logger: quietLogger{}})
	if err != nil {
		return err
	}
	defer c.Close()
	resp, err := c.DescribeTaskQueue(ctx, workflows.TaskQueue, enums.TASK_QUEUE_TYPE_ACTIVITY)
	if err != nil {
		return err
	}
	for _, p := range resp.GetPollers() {
		if strings.HasPrefix(p.GetIdentity(), strconv.Itoa(pid)+"@") {
			return nil
		}
	}
	return errors.New("the worker does not poll its task queue yet")
}

func (d *devRun) startAPI(ctx context.Context) error {
	args := append([]string{"api", "--listen", d.cfg.listen}, d.controlPlaneArgs()...)
	if d.webURL != "" {
		args = append(args, "--temporal-web-url", d.webURL)
	}
	c, err := d.spawn("api", d.self, args, d.childEnv())
	if err != nil {
		return err
	}
	return d.waitReady(ctx, c, time.Minute, func(ctx context.Context) error {
		status, err := d.api().Do(ctx, http.MethodGet, "/healthz", nil, nil)
		if err == nil && status != http.StatusOK {
			err = fmt.Errorf("GET /healthz: %d", status)
		}
		return err
	})
}

// quietLogger keeps the Temporal SDK quiet while we poll a server that is
// still starting.
type quietLogger struct{}

func (quietLogger) Debug(string, ...any) {}
func (quietLogger) Info(string, ...any)  {}
func (quietLogger) Warn(string, ...any)  {}
func (quietLogger) Error(string, ...any) {}
