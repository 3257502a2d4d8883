package launch

import (
	"context"
	"fmt"
	"net"
	"os/exec"
	"strconv"
	"time"
)

// TemporalServer is a real Temporal server on PostgreSQL (bin/temporal-server,
// built from tools/temporal-server by `make temporal-server`): the
// production kind of Temporal, where the dev server keeps everything in one
// SQLite file.
type TemporalServer struct {
	Bin string // bin/temporal-server
	// DatabaseURL is the PostgreSQL URL of the server's store; its
	// visibility is the database of the same name + "_visibility".
	DatabaseURL string
	IP          string // default 127.0.0.1
	Port        int
}

// Address returns the frontend's host:port.
func (t *TemporalServer) Address() string {
	ip := t.IP
	if ip == "" {
		ip = "127.0.0.1"
	}
	return net.JoinHostPort(ip, strconv.Itoa(t.Port))
}

// SetupSchema creates the store's and visibility's databases when missing
// and brings their schemas up to date.
func (t *TemporalServer) SetupSchema(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, t.Bin, "setup-schema", "--database-url", t.DatabaseURL).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s setup-schema: %v\n%s", t.Bin, err, out)
	}
	return nil
}

// Process returns the server's process, logging to logPath and ready when
// it serves the default namespace (which it registers when missing). After
// a change of t (a new port), Apply it before the next start.
func (t *TemporalServer) Process(logPath string) *Process {
	p := &Process{Name: "temporal-server", Path: t.Bin, LogPath: logPath, ReadyTimeout: 3 * time.Minute,
		Ready: func(ctx context.Context, _ int) error { return TemporalServes(ctx, t.Address()) }}
	t.Apply(p)
	return p
}

// Apply sets p's arguments from t.
func (t *TemporalServer) Apply(p *Process) {
	p.Args = []string{"start", "--database-url", t.DatabaseURL, "--listen", t.Address(), "--namespace", "default"}
}
