// Package activities holds the steps of DownloadImageWorkflow that touch
// the world: the catalog and vendors' checksum files, the database, and the
// node agents. The workflow decides; these only do, and report typed errors
// (fault codes as Temporal application error types) so it can decide.
package activities

import (
	"context"
	"crypto/tls"
	"net/http"
	"sync"
	"time"

	"github.com/quantix/cloudimages/catalog"
	"github.com/quantix/cloudimages/credentials"
	"github.com/quantix/cloudimages/nodeagent/agentclient"
	"github.com/quantix/cloudimages/nodeauth"
	"github.com/quantix/cloudimages/signature"
	"github.com/quantix/cloudimages/store"
)

// ProgressSignal is the signal the watching activity sends its workflow
// every few seconds and on every change of state, with a ProgressUpdate.
const ProgressSignal = "download-progress"

// NodeVerifying is the ProgressUpdate state of a node-side job that is
// verifying what it downloaded, so the workflow can tell without knowing
// the agent's wire.
const NodeVerifying = agentclient.StateVerifying

// NodeConverting is the ProgressUpdate state of a node-side job that is
// converting the verified image to its pool's image_format.
const NodeConverting = agentclient.StateConverting

// NodePaused is the state of a node-side job paused at the end of a
// transfer window, its partial data kept (PauseOnNode's Paused.State).
const NodePaused = agentclient.StatePaused

// Signaler sends a signal to a workflow; a Temporal client.Client is one.
type Signaler interface {
	SignalWorkflow(ctx context.Context, workflowID, runID, signalName string, arg any) error
}

// Activities are the steps of DownloadImageWorkflow. Register a filled-in
// value with the worker; the workflow calls the methods through a nil
// pointer.
type Activities struct {
	Store     *store.Store
	Catalog   *catalog.Catalog
	NodeToken string       // the cluster secret; each node's credential is derived from it (package nodeauth)
	HTTP      *http.Client // fetches vendors' checksum files
	Temporal  Signaler     // tells the workflow about progress; nil sends nothing
	Settings  Settings
	// AgentTLS, when set, holds the CA the agents' certificates are
	// checked against (--agent-ca-file).
	AgentTLS *tls.Config
	// Credentials are the source credentials downloads may name
	// (--credentials); nil holds none.
	Credentials *credentials.Set
	// Keyring holds the vendors' public keys that checksum files'
	// signatures are checked with (--keyring); nil holds the shipped ones.
	Keyring *signature.Keyring
}

// Settings are the timings of a download. Zero fields take the defaults.
type Settings struct {
	// NoNodeTimeout is how long a download waits for a usable node.
	NoNodeTimeout time.Duration
	// NodeGrace is how long a node may stay unreachable mid-download
	// before the download fails over to another node.
	NodeGrace time.Duration
	// HeartbeatTimeout is how soon a dead worker is noticed: the watch is
	// then retried, and re-attaches to the node's job.
	HeartbeatTimeout time.Duration
	// PollInterval is how often the watch asks the node.
	PollInterval time.Duration
	// ProgressInterval is how often, at most, progress is written to the
	// database. The default (0.5 s) is below the agent's pace (a
	// long-poll answers byte progress about once a second, a poll comes
	// once a PollInterval), so every answer is written and the events
	// stream stays about a second behind the node.
	ProgressInterval time.Duration
	// SignalInterval is how often progress is signalled to the workflow.
	// Every signal is a few history events, so it is kept coarse.
	SignalInterval time.Duration
	// TransferWindows and TransferTimeZone are the cluster-wide transfer
	// windows (--transfer-windows, --transfer-time-zone): those of every
	// pool that sets none of its own. None: any time.
	TransferWindows  []string
	TransferTimeZone string
}

// WithDefaults fills zero fields with the defaults.
func (s Settings) WithDefaults() Settings {
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&s.NoNodeTimeout, 2*time.Minute)
	def(&s.NodeGrace, 30*time.Second)
	def(&s.HeartbeatTimeout, 20*time.Second)
	def(&s.PollInterval, time.Second)
	def(&s.ProgressInterval, 500*time.Millisecond)
	def(&s.SignalInterval, 5*time.Second)
	return s
}

func (a *Activities) settings() Settings { return a.Settings.WithDefaults() }

// shippedKeys is the keyring of an Activities given none: the keys in the binary.
var shippedKeys = sync.OnceValues(signature.Embedded)

func (a *Activities) keyring() *signature.Keyring {
	if a.Keyring != nil {
		return a.Keyring
	}
	k, err := shippedKeys()
	if err != nil {
		panic(err) // the binary's own keys are checked by its tests: a broken build
	}
	return k
}

func (a *Activities) httpClient() *http.Client {
	if a.HTTP != nil {
		return a.HTTP
	}
	return &http.Client{Timeout: 30 * time.Second}
}

// node returns a client for a node's agent, found by id in the store.
func (a *Activities) node(ctx context.Context, nodeID string) (*agentclient.Client, store.Node, error) {
	n, err := a.Store.Node(ctx, nodeID)
	if err != nil {
		return nil, n, err
	}
	return a.client(n), n, nil
}

// client is the one place a client for a node's agent is made. It sends
// the node's own credential, derived here and nowhere else from the
// cluster secret: what reaches a node's address opens that node only.
func (a *Activities) client(n store.Node) *agentclient.Client {
	return agentclient.New(n.Address, nodeauth.Credential(a.NodeToken, n.ID), agentclient.WithTLS(a.AgentTLS))
}
