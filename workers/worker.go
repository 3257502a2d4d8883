package workers

import (
	"crypto/tls"
	"net/http"
	"time"

	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/interceptor"
	"go.temporal.io/sdk/worker"
	"go.temporal.io/sdk/workflow"

	"github.com/quantix/cloudimages/activities"
	"github.com/quantix/cloudimages/catalog"
	"github.com/quantix/cloudimages/credentials"
	"github.com/quantix/cloudimages/signature"
	"github.com/quantix/cloudimages/store"
	"github.com/quantix/cloudimages/workflows"
)

// Deps are what the worker's activities work with.
type Deps struct {
	Store     *store.Store
	Catalog   *catalog.Catalog
	NodeToken string      // the cluster secret
	AgentTLS  *tls.Config // the agents' CA, when they serve HTTPS
	Settings  activities.Settings
	HTTP      *http.Client // for vendors' checksum files; nil uses a default
	// Credentials are the source credentials downloads may name; nil holds none.
	Credentials *credentials.Set
	// Keyring holds the vendors' keys checksum files are checked with;
	// nil holds the built-in ones.
	Keyring *signature.Keyring
	// Metrics, when set, counts the worker's activities and workflows.
	Metrics *Metrics
}

// New returns a worker, not yet started, that runs DownloadImageWorkflow,
// RemoveImageFileWorkflow, NodeHealthWorkflow, RefreshImageWorkflow, DistributeImageWorkflow and their activities on the
// image-downloads task queue. c also carries the watch's progress signals
// to the workflows.
func New(c client.Client, deps Deps) worker.Worker {
	var interceptors []interceptor.WorkerInterceptor
	if deps.Metrics != nil {
		interceptors = append(interceptors, deps.Metrics.Interceptor())
	}
	w := worker.New(c, workflows.TaskQueue, worker.Options{
		Interceptors: interceptors,
		// Heartbeats reach the server (and Temporal Web) every 2 s, not
		// only every 80% of the heartbeat timeout.
		MaxHeartbeatThrottleInterval:     2 * time.Second,
		DefaultHeartbeatThrottleInterval: 2 * time.Second,
		// The watch gives its attempt back at once when the worker stops;
		// the other activities are short.
		WorkerStopTimeout: 10 * time.Second,
	})
	w.RegisterWorkflowWithOptions(workflows.DownloadImageWorkflow, workflow.RegisterOptions{Name: workflows.WorkflowType})
	w.RegisterWorkflowWithOptions(workflows.UploadImageWorkflow, workflow.RegisterOptions{Name: workflows.UploadWorkflowType})
	w.RegisterWorkflowWithOptions(workflows.RemoveImageFileWorkflow, workflow.RegisterOptions{Name: workflows.RemoveFileWorkflowType})
	w.RegisterWorkflowWithOptions(workflows.NodeHealthWorkflow, workflow.RegisterOptions{Name: workflows.NodeHealthWorkflowType})
	w.RegisterWorkflowWithOptions(workflows.RefreshImageWorkflow, workflow.RegisterOptions{Name: workflows.RefreshWorkflowType})
	w.RegisterWorkflowWithOptions(workflows.DistributeImageWorkflow, workflow.RegisterOptions{Name: workflows.DistributeWorkflowType})
	w.RegisterActivity(&activities.Activities{
		Store:     deps.Store,
		Catalog:   deps.Catalog,
		NodeToken: deps.NodeToken,
		AgentTLS:  deps.AgentTLS,
		HTTP:      deps.HTTP,
		Temporal:  c,
		Settings:  deps.Settings,

		Credentials: deps.Credentials,
		Keyring:     deps.Keyring,
	})
	return w
}
