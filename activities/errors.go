package activities

import (
	"fmt"

	"go.temporal.io/sdk/temporal"

	"github.com/quantix/cloudimages/fault"
)

// FailoverError is the application error type of a failure that is the
// node's, not the image's: the workflow moves the download to another node.
const FailoverError = "node_failover"

// fatal is a failure no retry and no other node can get past; its type is
// the contract's error code, which the workflow fails with.
func fatal(code, format string, args ...any) error {
	return temporal.NewNonRetryableApplicationError(fmt.Sprintf(format, args...), code, nil)
}

// failover says the node cannot finish this download; the message says
// why and the detail carries the contract code of the node's error, so the
// workflow can tell a dead node from a mirror that no node can reach.
func failover(code, format string, args ...any) error {
	return temporal.NewNonRetryableApplicationError(fmt.Sprintf(format, args...), FailoverError, nil, code)
}

// PeerFailedError is the application error type of a copy from a peer
// that failed: the workflow copies from another READY copy, or from the
// mirror, on the same node.
const PeerFailedError = "peer_failed"

// peerFailed says the copy's source failed it; the detail carries the
// contract code of the node's error, as for failover.
func peerFailed(code, format string, args ...any) error {
	return temporal.NewNonRetryableApplicationError(fmt.Sprintf(format, args...), PeerFailedError, nil, code)
}

// retryable is a failure that the activity's retry policy may get past.
func retryable(code, format string, args ...any) error {
	return temporal.NewApplicationError(fmt.Sprintf(format, args...), code)
}

// nodeSpecific are the codes that say something about the node (its token,
// its pools, its health) rather than the image: another node may do better.
var nodeSpecific = map[string]bool{
	fault.NodeUnreachable: true,
	fault.Unauthorized:    true,
	fault.PoolNotFound:    true,
	fault.Internal:        true,
}

// fromNode turns an agent's error into the activity's: retryable ones are
// left to the retry policy (or, in the watch, to the grace period); errors
// of the node fail over; errors of the image are fatal. A full disk, which
// the agent calls retryable, is the node's on a local pool (another node
// has its own disk) and fatal on a shared one, where every node writes to
// the same disk.
func fromNode(nodeID string, fe *fault.Error, shared bool) error {
	switch {
	case fe.Code == fault.DiskFull && shared:
		return fatal(fe.Code, "%s", fe.Message)
	case fe.Code == fault.DiskFull:
		return failover(fe.Code, "node %s: %s: %s", nodeID, fe.Code, fe.Message)
	case fe.Retryable:
		return retryable(fe.Code, "node %s: %s", nodeID, fe.Message)
	case nodeSpecific[fe.Code]:
		return failover(fe.Code, "node %s: %s: %s", nodeID, fe.Code, fe.Message)
	default:
		return fatal(fe.Code, "%s", fe.Message)
	}
}
