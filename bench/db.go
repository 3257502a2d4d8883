package main

import (
	"context"
	"database/sql"
	"fmt"
	"net/url"
	"os"
	"strings"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib" // database/sql driver "pgx", for the write counts
)

// postgresEnv names the server the tests use; the bench makes its own
// database there, so the scale part can count database writes.
const postgresEnv = "CLOUDIMAGES_TEST_POSTGRES_URL"

// freshPostgres creates an empty database on the server in
// $CLOUDIMAGES_TEST_POSTGRES_URL and returns its URL and a function that
// drops it; "" when the variable is not set.
func freshPostgres(ctx context.Context) (string, func(), error) {
	base := os.Getenv(postgresEnv)
	if base == "" {
		return "", func() {}, nil
	}
	db, err := sql.Open("pgx", base)
	if err != nil {
		return "", nil, err
	}
	name := fmt.Sprintf("cloudimages_bench_%d", os.Getpid())
	if _, err := db.ExecContext(ctx, "CREATE DATABASE "+name); err != nil {
		db.Close()
		return "", nil, fmt.Errorf("create database on %s: %w", postgresEnv, err)
	}
	u, err := url.Parse(base)
	if err != nil {
		db.Close()
		return "", nil, err
	}
	u.Path = "/" + name
	drop := func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		db.ExecContext(ctx, "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)")
		db.Close()
	}
	return u.String(), drop, nil
}

// rowWrites is the rows inserted, updated and deleted in a PostgreSQL
// database so far (the statistics lag by about a second).
func rowWrites(ctx context.Context, dbURL string) (int64, error) {
	if !strings.HasPrefix(dbURL, "postgres") {
		return 0, fmt.Errorf("counted on PostgreSQL only")
	}
	db, err := sql.Open("pgx", dbURL)
	if err != nil {
		return 0, err
	}
	defer db.Close()
	var n sql.NullInt64
	err = db.QueryRowContext(ctx, "SELECT sum(n_tup_ins + n_tup_upd + n_tup_del) FROM pg_stat_user_tables").Scan(&n)
	return n.Int64, err
}
