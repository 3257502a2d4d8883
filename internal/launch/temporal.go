package launch

import (
	"context"
	"errors"
	"net"
	"strconv"
	"strings"
	"time"

	"go.temporal.io/api/enums/v1"
	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/client"

	"github.com/quantix/cloudimages/workflows"
)

// Temporal is a Temporal dev server (`temporal server start-dev`) with the
// workflow's search attributes.
type Temporal struct {
	CLI    string // the temporal CLI
	IP     string // default 127.0.0.1
	Port   int
	UIPort int
	// DBFile keeps the server's state in a SQLite file, so that a restart
	// loses no workflow; empty: in memory.
	DBFile string
}

// Address returns the frontend's host:port.
func (t *Temporal) Address() string {
	return net.JoinHostPort(t.ip(), strconv.Itoa(t.Port))
}

// WebURL returns the URL of Temporal Web; a server on every address is
// reached through 127.0.0.1.
func (t *Temporal) WebURL() string {
	host := t.ip()
	if host == "0.0.0.0" || host == "::" {
		host = "127.0.0.1"
	}
	return "http://" + net.JoinHostPort(host, strconv.Itoa(t.UIPort))
}

func (t *Temporal) ip() string {
	if t.IP == "" {
		return "127.0.0.1"
	}
	return t.IP
}

// Args returns the CLI's arguments.
func (t *Temporal) Args() []string {
	args := []string{"server", "start-dev", "--ip", t.ip(), "--port", strconv.Itoa(t.Port),
		"--ui-port", strconv.Itoa(t.UIPort), "--log-level", "warn"}
	if t.DBFile != "" {
		args = append(args, "--db-filename", t.DBFile)
	}
	return append(args, SearchAttributeArgs()...)
}

// SearchAttributeArgs are the dev server's flags that register the
// workflow's Keyword search attributes.
func SearchAttributeArgs() []string {
	var args []string
	for _, name := range workflows.SearchAttributeNames {
		args = append(args, "--search-attribute", name+"=Keyword")
	}
	return args
}

// Process returns the dev server's process, logging to logPath and ready
// when it serves the default namespace at t.Address(). After a change of t
// (new ports), Apply it before the next start.
func (t *Temporal) Process(logPath string) *Process {
	p := &Process{Name: "temporal", Path: t.CLI, LogPath: logPath, ReadyTimeout: 2 * time.Minute,
		Ready: func(ctx context.Context, _ int) error { return TemporalServes(ctx, t.Address()) }}
	t.Apply(p)
	return p
}

// Apply sets p's arguments from t.
func (t *Temporal) Apply(p *Process) { p.Args = t.Args() }

// TemporalServes reports whether a Temporal frontend serves the default
// namespace at address.
func TemporalServes(ctx context.Context, address string) error {
	c, err := client.DialContext(ctx, client.Options{HostPort: address, Logger: quietLogger{}})
	if err != nil {
		return err
	}
	defer c.Close()
	_, err = c.WorkflowService().DescribeNamespace(ctx, &workflowservice.DescribeNamespaceRequest{Namespace: "default"})
	return err
}

// WorkerPolls reports whether the worker with this pid polls the task
// queue: the SDK's default worker identity starts with "PID@".
func WorkerPolls(ctx context.Context, temporalAddress string, pid int) error {
	c, err := client.DialContext(ctx, client.Options{HostPort: temporalAddress, Logger: quietLogger{}})
	if err != nil {
		return err
	}
	defer c.Close()
	resp, err := c.DescribeTaskQueue(ctx, workflows.TaskQueue, enums.TASK_QUEUE_TYPE_ACTIVITY)
	if err != nil {
		return err
	}
	prefix := strconv.Itoa(pid) + "@"
	for _, p := range resp.GetPollers() {
		if strings.HasPrefix(p.GetIdentity(), prefix) {
			return nil
		}
	}
	return errors.New("worker pid " + strconv.Itoa(pid) + " does not poll task queue " + workflows.TaskQueue + " yet")
}

// quietLogger keeps the Temporal SDK quiet while we poll a server that is
// still starting.
type quietLogger struct{}

func (quietLogger) Debug(string, ...any) {}
func (quietLogger) Info(string, ...any)  {}
func (quietLogger) Warn(string, ...any)  {}
func (quietLogger) Error(string, ...any) {}
