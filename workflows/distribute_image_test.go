package workflows_test

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/mock"
	"go.temporal.io/sdk/temporal"

	"github.com/quantix/cloudimages/activities"
	"github.com/quantix/cloudimages/fault"
	"github.com/quantix/cloudimages/imagestate"
	"github.com/quantix/cloudimages/source"
	"github.com/quantix/cloudimages/workflows"
)

// imagePlan is the plan of a distribution of image img-src (an upload in
// pool p0, on node-src) into pools p1..pN: no mirror, no URL.
func imagePlan(pools int) activities.DistributionPlan {
	return withCopies(activities.DistributionPlan{DistributionID: distID, Name: "disk.qcow2", Checksum: "sha256:aa",
		SourceImageID: "img-src", SourceNodeID: "node-src"}, pools)
}

// TestDistributeAnImageCopiesFromItNeverFromAMirror: the image's pool is
// not a target, and still the image is the first source: no copy reads a
// mirror (there is none), each names the image as its source, and the
// READY copies become sources too.
func TestDistributeAnImageCopiesFromItNeverFromAMirror(t *testing.T) {
	d := newDistEnv(t, imagePlan(4))
	res, err := d.run(t, 1)
	if err != nil {
		t.Fatal(err)
	}
	if res.Status != "READY" {
		t.Fatalf("result %+v, want READY", res)
	}
	if m := d.copies.fromMirror(); len(m) != 0 {
		t.Fatalf("copies from the mirror: %v, want none", m)
	}
	var first []string
	for _, in := range d.copies.started {
		if in.SourceImageID != "img-src" || in.URL != "" || in.CatalogID != "" {
			t.Errorf("copy into %s started with source image %q, url %q, catalog %q; want image img-src only", in.PoolID, in.SourceImageID, in.URL, in.CatalogID)
		}
		first = append(first, in.Peers[0])
	}
	if first[0] != "img-src" || !slices.ContainsFunc(first[1:], func(s string) bool { return s != "img-src" }) {
		t.Fatalf("first sources of the copies %v: want img-src first, and READY copies among the later ones", first)
	}
	for pool, rec := range d.final() {
		if rec.Status != imagestate.Ready || !strings.HasPrefix(rec.Source, "node:") {
			t.Errorf("pool %s: %s from %q, want READY from a node", pool, rec.Status, rec.Source)
		}
	}
	if d.copies.started[0].Peers[0] == "img-src" && d.records[0].Source != "node:node-src" {
		t.Errorf("the first copy is recorded from %q, want node:node-src", d.records[0].Source)
	}
}

// imageCopyInput is a copy of image img-src, whose only READY copy is
// itself.
var imageCopyInput = workflows.Input{ImageID: imageID, PoolID: poolID, Peers: []string{"img-src"}, DistributionID: "d1", SourceImageID: "img-src"}

// copyOfImage mocks what a copy of image img-src resolves before its first
// job: the image as its source, the checksum as given, node-1 to copy to.
func (f *fixture) copyOfImage() {
	f.env.OnActivity(a.ResolveImageSource, mock.Anything, "img-src").Return(source.Source{Name: "disk.qcow2", FileName: "disk.qcow2",
		SourceKey: "upload:img-src", Checksum: sum}, nil).Once()
	f.env.OnActivity(a.ResolveChecksum, mock.Anything, mock.Anything).Return(func(_ context.Context, r activities.ChecksumRequest) (source.Source, error) {
		return r.Source, nil
	})
	f.env.OnActivity(a.PickNode, mock.Anything, mock.Anything).Return(pick("node-1"), nil)
}

// TestImageCopyWhoseSourceDiesFailsNodeUnreachableWithoutAMirror: the copy
// of an image reads its only source, whose node dies: the copy fails
// node_unreachable naming the node and the image, its job removed, with
// no job started without a peer (there is no mirror to read).
func TestImageCopyWhoseSourceDiesFailsNodeUnreachableWithoutAMirror(t *testing.T) {
	f := newFixture(t, false)
	f.copyOfImage()
	var starts []activities.Job
	var cancelled []string
	f.env.OnActivity(a.CancelOnNode, mock.Anything, mock.Anything).Return(func(_ context.Context, r activities.CancelRequest) error {
		cancelled = append(cancelled, r.DownloadID)
		return nil
	})
	f.env.OnActivity(a.StartOnNode, mock.Anything, mock.Anything).Return(func(_ context.Context, j activities.Job) (activities.Started, error) {
		starts = append(starts, j)
		return activities.Started{NodeID: j.NodeID, BytesTotal: 1000, Peer: &activities.PeerUsed{ImageID: "img-src", NodeID: "node-src"}}, nil
	})
	f.env.OnActivity(a.WatchDownload, mock.Anything, mock.Anything).Return(activities.Finished{},
		temporal.NewNonRetryableApplicationError("node node-1: copying image img-src from its peer failed: upstream_error: cannot reach the mirror 127.0.0.1:1: connection refused",
			activities.PeerFailedError, nil, fault.UpstreamError))
	f.defaults()
	f.env.ExecuteWorkflow(workflows.WorkflowType, imageCopyInput)
	var appErr *temporal.ApplicationError
	err := f.env.GetWorkflowError()
	if !errors.As(err, &appErr) || appErr.Type() != fault.NodeUnreachable || !strings.Contains(appErr.Message(), "the copy from node node-src failed") ||
		!strings.Contains(appErr.Message(), "no mirror") {
		t.Fatalf("error %v, want node_unreachable naming node-src and saying there is no mirror", err)
	}
	if len(starts) != 1 || starts[0].URL != "" {
		t.Fatalf("jobs started %+v, want the one peer copy", starts)
	}
	if !slices.Equal(cancelled, []string{imageID}) {
		t.Fatalf("jobs removed %v, want the failed copy's", cancelled)
	}
	if !strings.Contains(f.recordsSoFar(), "FAILED node_unreachable") {
		t.Fatalf("records %s, want FAILED node_unreachable", f.recordsSoFar())
	}
}

// TestImageCopyWithNoUsableSourceFailsNoNodeAvailable: the source's node is
// offline when the copy starts (StartOnNode finds no READY copy to read):
// the copy fails no_node_available with the activity's reason.
func TestImageCopyWithNoUsableSourceFailsNoNodeAvailable(t *testing.T) {
	f := newFixture(t, false)
	f.copyOfImage()
	starts := 0
	f.env.OnActivity(a.StartOnNode, mock.Anything, mock.Anything).Return(func(context.Context, activities.Job) (activities.Started, error) {
		starts++
		return activities.Started{}, temporal.NewNonRetryableApplicationError("no READY copy is left to copy image x from: image img-src is on node node-src, which is offline",
			activities.PeerFailedError, nil, fault.NoNodeAvailable)
	})
	f.defaults()
	f.env.ExecuteWorkflow(workflows.WorkflowType, imageCopyInput)
	var appErr *temporal.ApplicationError
	err := f.env.GetWorkflowError()
	if !errors.As(err, &appErr) || appErr.Type() != fault.NoNodeAvailable || !strings.Contains(appErr.Message(), "node-src, which is offline") {
		t.Fatalf("error %v, want no_node_available naming node-src", err)
	}
	if starts != 1 {
		t.Fatalf("%d starts, want 1 (no mirror job after it)", starts)
	}
}

// TestImageCopyWhoseSourceFileIsBadKeepsItsCode: the source's file fails
// the copy's check: the copy fails checksum_mismatch (not
// node_unreachable: the node answered), naming the node.
func TestImageCopyWhoseSourceFileIsBadKeepsItsCode(t *testing.T) {
	f := newFixture(t, false)
	f.copyOfImage()
	f.env.OnActivity(a.StartOnNode, mock.Anything, mock.Anything).Return(activities.Started{NodeID: "node-1", BytesTotal: 1000,
		Peer: &activities.PeerUsed{ImageID: "img-src", NodeID: "node-src"}}, nil)
	f.env.OnActivity(a.WatchDownload, mock.Anything, mock.Anything).Return(activities.Finished{},
		temporal.NewNonRetryableApplicationError("node node-1: copying image img-src from its peer failed: checksum_mismatch: the copy differs",
			activities.PeerFailedError, nil, fault.ChecksumMismatch))
	f.defaults()
	f.env.ExecuteWorkflow(workflows.WorkflowType, imageCopyInput)
	var appErr *temporal.ApplicationError
	err := f.env.GetWorkflowError()
	if !errors.As(err, &appErr) || appErr.Type() != fault.ChecksumMismatch || !strings.Contains(appErr.Message(), "the copy from node node-src failed") {
		t.Fatalf("error %v, want checksum_mismatch naming node-src", err)
	}
}
