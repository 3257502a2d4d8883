package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"

	"github.com/quantix/cloudimages/internal/launch"
)

// devConfig is the configuration of `cloudimages dev`.
type devConfig struct {
	dataDir         string
	listen          string   // the API and UI
	agents          int      // how many node agents: node-1 … node-N
	agentListen     []string // node-1 … node-N
	temporalAddress string
	temporalUIPort  int
	temporalCLI     string // empty: next to the executable, then ./bin
	apiToken        string
	allowPrivate    bool
}

func runDev(ctx context.Context, args []string) error {
	var cfg devConfig
	var agents string
	f := newFlags("dev", "Runs everything on embedded defaults in one process tree: a Temporal dev server with Temporal Web,\n"+
		"the worker, the API and web UI, and node agents (node-1 … node-N, two unless --agents says) with a local\n"+
		"pool each (local-1 … local-N), node-1 and node-2 also sharing one pool (shared-nfs). State is kept under\n"+
		"--data-dir, so a second run finds its images again. Ctrl-C stops it all.")
	f.string(&cfg.dataDir, "data-dir", "CLOUDIMAGES_DATA_DIR", ".data", "where the dev setup keeps its database, pools, logs and Temporal state")
	f.string(&cfg.listen, "listen", "CLOUDIMAGES_DEV_LISTEN", "127.0.0.1:8080", "host:port of the API and web UI")
	f.int(&cfg.agents, "agents", "CLOUDIMAGES_DEV_AGENTS", 2, "how many node agents to start, each with a local pool (a distribution's copies need several)")
	f.string(&agents, "agent-listen", "CLOUDIMAGES_DEV_AGENT_LISTEN", "", "host:port of node-1 … node-N, comma-separated (default 127.0.0.1:9091, :9092, … one port up per agent)")
	f.string(&cfg.temporalAddress, "temporal-address", "TEMPORAL_ADDRESS", "127.0.0.1:7233", "Temporal frontend: used if a server answers there, else a dev server is started on it")
	f.int(&cfg.temporalUIPort, "temporal-ui-port", "CLOUDIMAGES_DEV_TEMPORAL_UI_PORT", 8233, "port of Temporal Web, when the dev server is started here")
	f.string(&cfg.temporalCLI, "temporal-cli", "CLOUDIMAGES_TEMPORAL_CLI", "", "the temporal CLI that runs the dev server (default: next to this binary, then ./bin/temporal)")
	f.secret(&cfg.apiToken, "api-token", "CLOUDIMAGES_API_TOKEN", "bearer token the API requires on /v1/ routes (none: no auth)")
	f.bool(&cfg.allowPrivate, "allow-private-networks", "CLOUDIMAGES_ALLOW_PRIVATE_NETWORKS", false, "let the agents download from loopback and private addresses (a mirror on your LAN)")
	if err := f.parse(args); err != nil {
		return err
	}
	if err := cfg.parse(agents); err != nil {
		return err
	}
	if err := f.checkTokens(); err != nil {
		return err
	}
	return newDevRun(cfg).run(ctx)
}

// parse checks the settings and makes the data dir absolute: the children
// get paths, and may not share the working directory's meaning.
func (c *devConfig) parse(agents string) error {
	for _, a := range strings.Split(agents, ",") {
		if a = strings.TrimSpace(a); a != "" {
			c.agentListen = append(c.agentListen, a)
		}
	}
	if c.agents < 1 || c.agents > maxDevAgents {
		return usagef("--agents %d: want between 1 and %d", c.agents, maxDevAgents)
	}
	if len(c.agentListen) == 0 {
		for i := range c.agents {
			c.agentListen = append(c.agentListen, "127.0.0.1:"+strconv.Itoa(firstDevAgentPort+i))
		}
	}
	if len(c.agentListen) != c.agents {
		return usagef("--agent-listen %q: want %d host:port, one per agent (--agents %d), e.g. %s", agents, c.agents, c.agents, devListenExample(c.agents))
	}
	for _, hp := range append([]string{c.listen, c.temporalAddress}, c.agentListen...) {
		if _, _, err := net.SplitHostPort(hp); err != nil {
			return usagef("%q: want host:port, e.g. 127.0.0.1:8080", hp)
		}
	}
	if c.temporalUIPort < 1 || c.temporalUIPort > 65535 {
		return usagef("--temporal-ui-port %d: want a port between 1 and 65535", c.temporalUIPort)
	}
	if c.dataDir == "" {
		return usagef("--data-dir is empty: give a directory, e.g. .data")
	}
	abs, err := filepath.Abs(c.dataDir)
	if err != nil {
		return usagef("--data-dir %q: %v", c.dataDir, err)
	}
	c.dataDir = abs
	return nil
}

// maxDevAgents bounds --agents: one machine, one port each.
const maxDevAgents = 64

// firstDevAgentPort is node-1's port when --agent-listen is not given;
// node-K listens on the K-1th port after it.
const firstDevAgentPort = 9091

func devListenExample(n int) string {
	var hp []string
	for i := range n {
		hp = append(hp, "127.0.0.1:"+strconv.Itoa(firstDevAgentPort+i))
	}
	return strings.Join(hp, ",")
}

// devRun is one run of the dev setup: its children and where they keep things.
type devRun struct {
	cfg       devConfig
	nodes     []string      // node-1 … node-N, in order of --agent-listen
	pools     []launch.Pool // their local pools, and the shared one
	log       *slog.Logger
	nodeToken string
	children  []*launch.Process
	exited    chan *launch.Process // a child that ended on its own
	webURL    string               // Temporal Web, when started here
	self      string               // this binary, which the children run
	stopping  atomic.Bool
}

func newDevRun(cfg devConfig) *devRun {
	nodes, pools := devLayout(cfg.agents)
	return &devRun{cfg: cfg, nodes: nodes, pools: pools, log: slog.Default().With("component", "dev"), exited: make(chan *launch.Process, cfg.agents+4)}
}

// run starts everything, waits for Ctrl-C or for a child to die, and
// stops everything.
func (d *devRun) run(ctx context.Context) error {
	internet := probeMirror(ctx, builtinMirror())
	err := d.start(ctx)
	if err == nil {
		d.printWelcome()
		if msg := <-internet; msg != "" {
			fmt.Fprintf(os.Stdout, "\nNote: %s.\n", msg)
		}
		select {
		case <-ctx.Done():
			fmt.Fprintln(os.Stderr, "\nstopping…")
		case c := <-d.exited:
			err = fmt.Errorf("%s exited on its own (%v); its log is %s:\n%s", c.Name, c.State(), c.LogPath, c.Tail(20))
		}
	}
	if ctx.Err() != nil && errors.Is(err, context.Canceled) {
		err = nil // Ctrl-C while starting: stop as asked
	}
	d.stopAll()
	if err == nil {
		fmt.Fprintln(os.Stderr, "everything stopped")
	}
	return err
}

// start brings the parts up in order: Temporal, agents, worker, API; then
// it registers the nodes and pools.
func (d *devRun) start(ctx context.Context) error {
	if err := d.prepare(); err != nil {
		return err
	}
	if err := d.startTemporal(ctx); err != nil {
		return err
	}
	for i := range d.cfg.agentListen {
		if err := d.startAgent(ctx, i); err != nil {
			return err
		}
	}
	if err := d.startWorker(ctx); err != nil {
		return err
	}
	if err := d.startAPI(ctx); err != nil {
		return err
	}
	return d.register(ctx)
}
