package testenv

import (
	"context"
	"database/sql"
	"net/url"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// TemporalServerEnv names the variable with the path of bin/temporal-server
// (tools/temporal-server: a real Temporal server on PostgreSQL); `make
// test-topology` sets it.
const TemporalServerEnv = "CLOUDIMAGES_TEMPORAL_SERVER"

// TemporalServerBinary returns the path of the Temporal server binary:
// $CLOUDIMAGES_TEMPORAL_SERVER, else bin/temporal-server at the repository
// root. Without one the test is skipped, and fails in CI.
func TemporalServerBinary(t testing.TB) string {
	t.Helper()
	p := os.Getenv(TemporalServerEnv)
	if p == "" {
		p = filepath.Join(RepoRoot(t), "bin", "temporal-server")
	}
	if _, err := os.Stat(p); err != nil {
		SkipUnlessCI(t, "no Temporal server binary at %s: run `make temporal-server` (%v)", p, err)
	}
	return p
}

// TopologyOptions configures StartTopology: the stack's options, whose
// zero counts default to the production shape (two API replicas, two
// workers, two agents). DatabaseURL and TemporalDatabaseURL are set by
// StartTopology.
type TopologyOptions struct {
	Stack StackOptions
}

// Topology is cloudimages in its production topology: a real Temporal
// server on PostgreSQL, the API ×2 and the worker ×2 on PostgreSQL, and
// node agents; every connection to PostgreSQL goes through Postgres, a
// proxy the test cuts to take PostgreSQL away and restores.
type Topology struct {
	*Stack
	// Postgres is the proxy in front of the PostgreSQL server: Cut is an
	// outage of the database for Temporal, the API and the workers.
	Postgres *TCPProxy
}

// StartTopology starts the production topology on the PostgreSQL server of
// CLOUDIMAGES_TEST_POSTGRES_URL: fresh databases for cloudimages and for
// Temporal (store and visibility), dropped when the test ends. Without
// PostgreSQL or bin/temporal-server the test is skipped, and fails in CI.
func StartTopology(t testing.TB, opts TopologyOptions) *Topology {
	t.Helper()
	TemporalServerBinary(t) // before anything starts: skipped or failed at once without it
	productURL, ok := Postgres(t)
	if !ok {
		SkipUnlessCI(t, "%s is not set: the topology runs on PostgreSQL", PostgresEnv)
	}
	base, err := url.Parse(os.Getenv(PostgresEnv))
	if err != nil {
		t.Fatal(err)
	}
	target := base.Host
	if base.Port() == "" {
		target += ":5432"
	}
	proxy := NewTCPProxy(t, target)
	temporalURL := temporalDatabase(t, base)
	so := opts.Stack
	so.DatabaseURL = throughProxy(t, productURL, proxy)
	so.TemporalDatabaseURL = throughProxy(t, temporalURL, proxy)
	if so.APIs == 0 {
		so.APIs = 2
	}
	if so.Workers == 0 {
		so.Workers = 2
	}
	return &Topology{Stack: StartStack(t, so), Postgres: proxy}
}

// temporalDatabase names fresh databases for a Temporal server (the
// server's setup-schema creates them: NAME and NAME_visibility) and drops
// them when the test ends.
func temporalDatabase(t testing.TB, base *url.URL) string {
	name := "temporal_topo_" + randomHex(6)
	t.Cleanup(func() {
		a, err := sql.Open("pgx", base.String())
		if err != nil {
			return
		}
		defer a.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		for _, db := range []string{name, name + "_visibility"} {
			if _, err := a.ExecContext(ctx, "DROP DATABASE IF EXISTS "+db+" WITH (FORCE)"); err != nil {
				t.Logf("drop Temporal's test database %s: %v", db, err)
			}
		}
	})
	u := *base
	u.Path = "/" + name
	return u.String()
}

// throughProxy returns the database URL with its host:port replaced by the proxy's.
func throughProxy(t testing.TB, raw string, p *TCPProxy) string {
	u, err := url.Parse(raw)
	if err != nil {
		t.Fatal(err)
	}
	u.Host = p.Addr()
	return u.String()
}
