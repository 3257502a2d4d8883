// Package testenv starts the real parts that tests run against: databases,
// a Temporal dev server, the cloudimages binary, and an upstream mirror.
package testenv

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"testing"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib" // the pgx database/sql driver, for creating test databases
)

// PostgresEnv names the variable that gives tests a PostgreSQL server,
// e.g. postgres://postgres@127.0.0.1:5432/test?sslmode=disable.
const PostgresEnv = "CLOUDIMAGES_TEST_POSTGRES_URL"

// Database is one database that a test can run against.
type Database struct {
	Name string // "sqlite" or "postgres"
	URL  string
}

// InCI reports whether the tests run in CI (CI set, as .ci/run's callers
// do): there every test must run, and a missing tool fails it.
func InCI() bool { return os.Getenv("CI") != "" }

// SkipUnlessCI skips a test that cannot run on this machine (a tool or a
// privilege it lacks), with why; in CI it fails the test instead, so a
// green run never hides a test that did not run.
func SkipUnlessCI(t testing.TB, format string, args ...any) {
	t.Helper()
	if InCI() {
		t.Fatalf("cannot run in CI: "+format, args...)
	}
	t.Skipf(format, args...)
}

// SQLite returns the URL of a fresh SQLite file in the test's temp dir.
func SQLite(t testing.TB) string {
	t.Helper()
	return "sqlite:" + filepath.Join(t.TempDir(), "cloudimages.db")
}

// Postgres returns the URL of a fresh PostgreSQL database, dropped when the
// test ends, and false when PostgresEnv is not set. In CI (CI=true) a
// missing variable fails the test instead: nothing is silently skipped there.
func Postgres(t testing.TB) (string, bool) {
	t.Helper()
	base := os.Getenv(PostgresEnv)
	if base == "" {
		if InCI() {
			t.Fatalf("%s is not set: CI must run the PostgreSQL tests (.ci/run sets it)", PostgresEnv)
		}
		return "", false
	}
	admin, err := sql.Open("pgx", base)
	if err != nil {
		t.Fatalf("open %s: %v", PostgresEnv, err)
	}
	defer admin.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	name := "cloudimages_test_" + randomHex(6)
	if _, err := admin.ExecContext(ctx, "CREATE DATABASE "+name); err != nil {
		t.Fatalf("create test database on %s: %v", PostgresEnv, err)
	}
	t.Cleanup(func() {
		a, err := sql.Open("pgx", base)
		if err != nil {
			return
		}
		defer a.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if _, err := a.ExecContext(ctx, "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)"); err != nil {
			t.Logf("drop test database %s: %v", name, err)
		}
	})
	u, err := url.Parse(base)
	if err != nil {
		t.Fatalf("parse %s: %v", PostgresEnv, err)
	}
	u.Path = "/" + name
	return u.String(), true
}

// Databases returns SQLite and, when available, PostgreSQL: tests that range
// over it run on both.
func Databases(t testing.TB) []Database {
	t.Helper()
	dbs := []Database{{Name: "sqlite", URL: SQLite(t)}}
	if u, ok := Postgres(t); ok {
		dbs = append(dbs, Database{Name: "postgres", URL: u})
	}
	return dbs
}

func randomHex(n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic(fmt.Sprintf("crypto/rand: %v", err))
	}
	return hex.EncodeToString(b)
}
