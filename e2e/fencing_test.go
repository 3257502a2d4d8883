package e2e

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/quantix/cloudimages/fault"
	"github.com/quantix/cloudimages/internal/testenv"
)

// TestFrozenAgentIsFencedWhenItWakes freezes (SIGSTOP) the agent writing a
// shared-pool download until the worker has failed over and another node
// has finished, then wakes it: exactly one node publishes, the image stays
// READY, and the published file stays whole and verified — also when the
// mirror ignores Range and answers 200 with the whole file, so the woken
// node would start over from zero.
func TestFrozenAgentIsFencedWhenItWakes(t *testing.T) {
	s := faultStack(t, "")
	up := testenv.NewUpstream(t)
	for _, c := range []struct {
		name  string
		fault testenv.Fault
	}{
		{"frozen.qcow2", testenv.Fault{BytesPerSecond: trickleRate}},
		{"frozen-norange.qcow2", testenv.Fault{BytesPerSecond: trickleRate, NoRange: true}},
	} {
		t.Run(c.name, func(t *testing.T) {
			f := addImage(up, c.name, trickleSize)
			up.SetFault(f.name, c.fault)
			img := download(t, s, f, "shared")
			mid := waitMidDownload(t, s, up, f, img.ID, trickleSize/8)
			victim := s.Agent(imageNode(mid))
			frozen := time.Now()
			if err := syscall.Kill(victim.Pid(), syscall.SIGSTOP); err != nil {
				t.Fatal(err)
			}
			woken := false
			wake := func() {
				if !woken {
					woken = true
					_ = syscall.Kill(victim.Pid(), syscall.SIGCONT)
				}
			}
			t.Cleanup(wake)

			done := waitStatus(t, s, img.ID, "READY", 2*time.Minute)
			if imageNode(done) == victim.NodeID() {
				t.Fatalf("READY on %s, the node that was frozen", victim.NodeID())
			}
			// A frozen agent is no dead one: its connections are accepted
			// and never answered, so the watch waited the node grace (2 s
			// in faultStack, counted from the node's last answer, at most
			// a long-poll's progress second before the freeze) and failed
			// over as unreachable, not as down.
			if len(done.Failovers) == 0 {
				t.Fatalf("READY without a failover from the frozen %s", victim.NodeID())
			}
			if fo := done.Failovers[0]; fo.NodeID != victim.NodeID() || !strings.Contains(fo.Reason, "unreachable for") ||
				!strings.Contains(fo.Reason, "did not answer") || strings.Contains(fo.Reason, "is down") || !fo.At.After(frozen) {
				t.Errorf("failover %+v %s after the freeze, want one from %s after its grace, as unreachable", fo, fo.At.Sub(frozen), victim.NodeID())
			}
			before := fileSHA256(t, done.Path)
			wake()

			// The woken agent must give up its job without publishing:
			// fenced at its next checkpoint (conflict), or told to stop.
			eventually(t, 60*time.Second, victim.NodeID()+" gives up the download it was frozen in", func() bool {
				d, err := victim.Client().Download(context.Background(), img.ID)
				if fe, ok := fault.As(err); ok && fe.Code == fault.NotFound {
					return true
				}
				return err == nil && d.Finished() && d.State != "completed"
			})
			again := waitStatus(t, s, img.ID, "READY", 10*time.Second)
			checkReadyFile(t, again, f)
			if after := fileSHA256(t, again.Path); after != before {
				t.Errorf("the published file changed after the frozen node woke: %s, was %s", after, before)
			}
			// Nothing else published under the image's name or beside it.
			published, _ := filepath.Glob(filepath.Join(s.PoolDir("shared", victim.NodeID()), "cloud-images", again.FileName+"*"))
			if len(published) != 1 || filepath.Base(published[0]) != again.FileName {
				t.Errorf("published: %v; want only %s", published, again.FileName)
			}
			if _, err := os.Stat(again.Path); err != nil {
				t.Errorf("the published file is gone: %v", err)
			}
			eventually(t, 30*time.Second, "no partial data left in the shared pool", func() bool {
				return len(partials(t, s.PoolDir("shared", victim.NodeID()))) == 0
			})
		})
	}
}
