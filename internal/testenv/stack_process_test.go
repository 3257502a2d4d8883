package testenv

import (
	"context"
	"net"
	"strconv"
	"testing"
	"time"

	"github.com/quantix/cloudimages/nodeagent/agentclient"
)

func TestProcessTriesAnotherPortWhenItsPortIsTaken(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	var addr string
	p := newProcess(t, "agent", Binary(t), nil, nil, func(_ int, exited <-chan struct{}) error {
		return pollReady(exited, 30*time.Second, func() error {
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			defer cancel()
			_, err := agentclient.New(addr, "token-0123456789abcdef").Health(ctx)
			return err
		})
	})
	tries := 0
	p.startOnFreePort(func() {
		tries++
		addr = l.Addr().String() // taken: the first try must fail
		if tries > 1 {
			addr = "127.0.0.1:" + strconv.Itoa(FreePort(t))
		}
		p.args = []string{"nodeagent", "--node-id", "n1", "--listen", addr, "--node-token", "token-0123456789abcdef", "--pool", "p=" + t.TempDir()}
	})
	if tries != 2 {
		t.Errorf("started after %d tries, want 2", tries)
	}
	pid := p.Pid()
	p.Kill()
	if p.Running() {
		t.Errorf("process %d runs after Kill", pid)
	}
	p.Start()
	if !p.Running() || p.Pid() == pid {
		t.Errorf("Start after Kill: running %v, pid %d (was %d)", p.Running(), p.Pid(), pid)
	}
}
