package testenv

import (
	"net"
	"strconv"
	"testing"

	"github.com/quantix/cloudimages/internal/launch"
	"github.com/quantix/cloudimages/nodeagent"
)

func TestProcessTriesAnotherPortWhenItsPortIsTaken(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	spec := &launch.Agent{Bin: Binary(t), NodeID: "n1", Token: "token-0123456789abcdef", Pools: []nodeagent.PoolDir{{ID: "p", Dir: t.TempDir()}}}
	p := newProcess(t, spec.Process("agent", ""))
	tries := 0
	p.startOnFreePort(func() {
		tries++
		spec.Listen = l.Addr().String() // taken: the first try must fail
		if tries > 1 {
			spec.Listen = "127.0.0.1:" + strconv.Itoa(FreePort(t))
		}
		spec.Apply(p.p)
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
