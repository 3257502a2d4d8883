package activities_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/quantix/cloudimages/activities"
	"github.com/quantix/cloudimages/nodeagent/agentclient"
	"github.com/quantix/cloudimages/store"
)

func TestJudgeHealth(t *testing.T) {
	n := store.Node{ID: "n1", Address: "10.0.0.1:9090"}
	at := time.Unix(1700000000, 0)
	answer := agentclient.Health{NodeID: "n1", ActiveDownloads: 2, Pools: []agentclient.PoolHealth{
		{ID: "local", FreeBytes: 10, TotalBytes: 100}, {ID: "nfs", FreeBytes: 20, TotalBytes: 200}}}
	cases := []struct {
		name       string
		h          agentclient.Health
		err        error
		online     bool
		reasonSays string
	}{
		{name: "answers as itself", h: answer, online: true},
		{name: "an agent that gives no node id is taken at its address", h: agentclient.Health{Pools: answer.Pools}, online: true},
		{name: "no answer", err: errors.New("connection refused"), reasonSays: "connection refused"},
		{name: "answers as another node", h: agentclient.Health{NodeID: "n2", Pools: answer.Pools}, reasonSays: `says it is node "n2"`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			v := activities.JudgeHealth(n, c.h, c.err, at)
			if v.Health.Online != c.online || !v.Health.At.Equal(at) {
				t.Fatalf("verdict %+v, want online=%v at %v", v, c.online, at)
			}
			if !c.online {
				if !strings.Contains(v.Reason, c.reasonSays) || !strings.Contains(v.Reason, n.Address) || len(v.Health.Pools) != 0 {
					t.Fatalf("offline verdict %+v: want no pools and a reason naming %s and %q", v, n.Address, c.reasonSays)
				}
				return
			}
			if v.Reason != "" || strings.Join(v.Health.Pools, ",") != "local,nfs" ||
				v.Health.Space["nfs"] != (store.Space{FreeBytes: 20, TotalBytes: 200}) {
				t.Fatalf("online verdict %+v", v)
			}
		})
	}
}
