package e2e

import (
	"testing"
	"time"

	"github.com/quantix/cloudimages/internal/testenv"
)

// TestDownloadsOnPostgres runs the stack on PostgreSQL, as in production:
// a download to a local pool, and a failover on the shared pool.
func TestDownloadsOnPostgres(t *testing.T) {
	url, ok := testenv.Postgres(t) // fails the test in CI (CI=true) when no database is configured
	if !ok {
		t.Skipf("%s is not set: this machine runs the end-to-end suite on SQLite only", testenv.PostgresEnv)
	}
	s := faultStack(t, url)
	up := testenv.NewUpstream(t)

	f := addImage(up, "pg-local.qcow2", smallSize)
	img := download(t, s, f, "local-1")
	checkReadyFile(t, waitStatus(t, s, img.ID, "READY", time.Minute), f)

	agentKillFailsOver(t, s, up, "pg-agent-kill.qcow2")
}
