package main

import (
	"context"
	"fmt"
	"os"
	"time"

	"github.com/quantix/cloudimages/nodeagent/agentclient"
	"github.com/quantix/cloudimages/nodeauth"
)

// peerSeed is the name the source agent publishes the transfer file under
// for the peer-copy contestant.
func peerSeed(src source) string { return "peer-seed-" + src.Name }

// seedPeer has agent from publish the transfer file (from the mirror)
// once, so that peerCopy's rounds copy it agent to agent; the returned
// func removes it.
func seedPeer(ctx context.Context, from *agent, src source, url string) (func(), error) {
	c := from.client()
	req := agentclient.DownloadRequest{ID: fmt.Sprintf("bench-peer-seed-%d", os.Getpid()), URL: url,
		PoolID: from.local, FileName: peerSeed(src), Checksum: src.Checksum(), SizeBytes: src.Size, Format: "raw"}
	d, err := runAgentJob(ctx, c, req, 10*time.Millisecond)
	remove := func() { _ = c.DeleteFile(context.Background(), from.local, peerSeed(src)) }
	if err == nil && d.State != agentclient.StateCompleted {
		err = fmt.Errorf("seeding the peer copy: agent job %s ended %s: %v", req.ID, d.State, d.Error)
	}
	if err != nil {
		remove()
		return nil, err
	}
	return remove, nil
}

// peerCopy copies the seeded file from agent from into agent to's local
// pool over GET /v1/pools/{pool}/files/{file} (a distribution's later
// copies), verified against its checksum, as one round.
func (b *bench) peerCopy(from, to *agent, src source) func(context.Context, int) (outcome, error) {
	cred := nodeauth.Credential(nodeToken, from.id)
	return func(ctx context.Context, r int) (outcome, error) {
		c := to.client()
		req := agentclient.DownloadRequest{ID: fmt.Sprintf("bench-peer-%d-%d", os.Getpid(), r),
			Peer: &agentclient.PeerSource{NodeID: from.id, Address: from.addr, PoolID: from.local, FileName: peerSeed(src),
				Token: nodeauth.MintFileRead(cred, from.local, peerSeed(src), time.Now().Add(time.Hour))},
			PoolID: to.local, FileName: src.Name, Checksum: src.Checksum(), SizeBytes: src.Size, Format: "raw"}
		pid := to.p.Pid()
		cpu, start := cpuTime(pid), time.Now()
		d, err := runAgentJob(ctx, c, req, 10*time.Millisecond)
		o := outcome{took: time.Since(start), cpu: cpuTime(pid) - cpu}
		defer c.DeleteFile(context.Background(), to.local, src.Name)
		if err != nil {
			return o, err
		}
		if d.State != agentclient.StateCompleted || d.BytesFromPeer != src.Size {
			return o, fmt.Errorf("peer copy %s ended %s with %d bytes from the peer: %v", req.ID, d.State, d.BytesFromPeer, d.Error)
		}
		m, _ := mem(to.p)
		o.rss = m.Peak
		return o, nil
	}
}
