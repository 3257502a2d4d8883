package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/quantix/cloudimages/internal/launch"
	"github.com/quantix/cloudimages/nodeagent"
	"github.com/quantix/cloudimages/nodeauth"
)

// devLayout is the dev setup of n agents: nodes node-1 … node-n, in order
// of --agent-listen; a local pool local-K on each node-K; and one pool,
// shared-nfs, that node-1 and node-2 both see, standing in for NFS. The
// shared pool keeps those two nodes whatever n is, so a later run with
// another --agents finds it as registered.
func devLayout(n int) ([]string, []launch.Pool) {
	var nodes []string
	var pools []launch.Pool
	for i := 1; i <= n; i++ {
		node := "node-" + strconv.Itoa(i)
		nodes = append(nodes, node)
		pools = append(pools, launch.Pool{ID: "local-" + strconv.Itoa(i), NodeIDs: []string{node}})
	}
	pools = append(pools, launch.Pool{ID: "shared-nfs", Shared: true, NodeIDs: nodes[:min(n, 2)]})
	return nodes, pools
}

// poolDir is where a pool lives on a node: a shared pool has one
// directory for all its nodes.
func (d *devRun) poolDir(p launch.Pool, nodeID string) string {
	if p.Shared {
		return filepath.Join(d.cfg.dataDir, "pools", p.ID)
	}
	return filepath.Join(d.cfg.dataDir, "pools", nodeID, p.ID)
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
	for _, p := range d.pools {
		for _, n := range p.NodeIDs {
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

// stopTimeout is how long a child gets to stop after SIGTERM before it is
// killed.
const stopTimeout = 15 * time.Second

// startChild starts a child and adds it to those stopAll stops. Its output goes
// to {data dir}/logs/{name}.log and, prefixed with its name, to our stderr
// (except the Temporal server's, which is noise to most users). A child
// that ends on its own afterwards is reported on d.exited.
func (d *devRun) startChild(ctx context.Context, p *launch.Process) error {
	p.LogPath = filepath.Join(d.cfg.dataDir, "logs", p.Name+".log")
	p.StopTimeout = stopTimeout
	if p.Name != "temporal" {
		p.Echo = os.Stderr
	}
	d.children = append(d.children, p)
	if err := p.Start(ctx); err != nil {
		return err
	}
	done := p.Done()
	go func() {
		<-done
		if !d.stopping.Load() {
			select {
			case d.exited <- p:
			default:
			}
		}
	}()
	return nil
}

// stopAll stops the children in the reverse order of their start (the
// API before the worker, the agents before Temporal), each with SIGTERM
// first and SIGKILL of its group after stopTimeout.
func (d *devRun) stopAll() {
	d.stopping.Store(true)
	for i := len(d.children) - 1; i >= 0; i-- {
		if err := d.children[i].Stop(); err != nil {
			fmt.Fprintln(os.Stderr, err)
		}
	}
}

// startTemporal uses the Temporal server at --temporal-address if one
// answers, else starts the dev server there with its state in the data dir.
func (d *devRun) startTemporal(ctx context.Context) error {
	answers, cancel := context.WithTimeout(ctx, 2*time.Second)
	err := launch.TemporalServes(answers, d.cfg.temporalAddress)
	cancel()
	if err == nil {
		d.log.Info("using the Temporal server that answers", "address", d.cfg.temporalAddress)
		return nil
	}
	cli, err := findTemporalCLI(d.cfg.temporalCLI)
	if err != nil {
		return fmt.Errorf("%w; or start a Temporal server at %s (TEMPORAL_ADDRESS) yourself", err, d.cfg.temporalAddress)
	}
	host, portText, _ := net.SplitHostPort(d.cfg.temporalAddress)
	port, err := strconv.Atoi(portText)
	if err != nil {
		return usagef("--temporal-address %q: want a numeric port", d.cfg.temporalAddress)
	}
	t := &launch.Temporal{CLI: cli, IP: host, Port: port, UIPort: d.cfg.temporalUIPort,
		DBFile: filepath.Join(d.cfg.dataDir, "temporal.db")}
	if host == "" {
		t.IP = "0.0.0.0" // ":7233" listens everywhere
	}
	d.webURL = t.WebURL()
	p := t.Process("")
	p.Ready = func(ctx context.Context, _ int) error { return launch.TemporalServes(ctx, d.cfg.temporalAddress) }
	return d.startChild(ctx, p)
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
	node := d.nodes[i]
	// Each agent holds only its own credential, derived from the cluster secret.
	a := &launch.Agent{Bin: d.self, NodeID: node, Listen: d.cfg.agentListen[i], Token: nodeauth.Credential(d.nodeToken, node),
		AllowPrivateNetworks: d.cfg.allowPrivate}
	for _, p := range d.pools {
		if slices.Contains(p.NodeIDs, node) {
			a.Pools = append(a.Pools, nodeagent.PoolDir{ID: p.ID, Dir: d.poolDir(p, node)})
		}
	}
	return d.startChild(ctx, a.Process(node, ""))
}

func (d *devRun) controlPlane() *launch.ControlPlane {
	return &launch.ControlPlane{Bin: d.self, TemporalAddress: d.cfg.temporalAddress, DatabaseURL: d.databaseURL(),
		NodeToken: d.nodeToken, APIToken: d.cfg.apiToken}
}

func (d *devRun) startWorker(ctx context.Context) error {
	return d.startChild(ctx, d.controlPlane().Worker("worker", ""))
}

func (d *devRun) startAPI(ctx context.Context) error {
	cp := d.controlPlane()
	p := cp.API("")
	cp.ApplyAPI(p, d.cfg.listen, d.webURL)
	return d.startChild(ctx, p)
}
