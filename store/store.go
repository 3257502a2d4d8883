// Package store keeps nodes, storage pools and images in a relational
// database through GORM: PostgreSQL in production, SQLite (pure Go, no cgo)
// as the embedded default.
package store

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/glebarez/sqlite"
	"gorm.io/driver/postgres"
	"gorm.io/gorm"
	"gorm.io/gorm/logger"
)

// DefaultURL is the embedded default database.
const DefaultURL = "sqlite:.data/cloudimages.db"

// Store is the database behind the API and the activities.
type Store struct {
	db      *gorm.DB
	dialect string // "postgres" or "sqlite"
}

// Open connects to the database named by rawURL and migrates its schema.
// rawURL is "postgres://…" (or "postgresql://…"), "sqlite:PATH", or a plain
// file path for SQLite.
func Open(ctx context.Context, rawURL string) (*Store, error) {
	dialector, dialect, err := dialectorFor(rawURL)
	if err != nil {
		return nil, err
	}
	db, err := gorm.Open(dialector, &gorm.Config{
		Logger:         logger.Discard,
		TranslateError: true,
		NowFunc:        func() time.Time { return time.Now().UTC() },
	})
	if err != nil {
		return nil, fmt.Errorf("open database %s: %w", redact(rawURL), err)
	}
	sqlDB, err := db.DB()
	if err != nil {
		return nil, err
	}
	if dialect == "sqlite" {
		// One writer at a time is all SQLite can do anyway; a small pool
		// keeps readers from piling up behind it.
		sqlDB.SetMaxOpenConns(4)
	} else {
		sqlDB.SetMaxOpenConns(20)
		sqlDB.SetConnMaxIdleTime(5 * time.Minute)
	}
	pingCtx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := sqlDB.PingContext(pingCtx); err != nil {
		sqlDB.Close()
		return nil, fmt.Errorf("database %s does not answer: %w (is it running, and is --database-url right?)", redact(rawURL), err)
	}
	s := &Store{db: db, dialect: dialect}
	if err := s.migrate(ctx); err != nil {
		sqlDB.Close()
		return nil, fmt.Errorf("migrate database %s: %w", redact(rawURL), err)
	}
	return s, nil
}

// Close closes the database connections.
func (s *Store) Close() error {
	sqlDB, err := s.db.DB()
	if err != nil {
		return err
	}
	return sqlDB.Close()
}

// Dialect is "postgres" or "sqlite".
func (s *Store) Dialect() string { return s.dialect }

// Ping checks that the database answers.
func (s *Store) Ping(ctx context.Context) error {
	sqlDB, err := s.db.DB()
	if err != nil {
		return err
	}
	return sqlDB.PingContext(ctx)
}

// ValidateURL checks the form of a --database-url without connecting.
func ValidateURL(rawURL string) error {
	_, _, err := dialectorFor(rawURL)
	return err
}

func dialectorFor(rawURL string) (gorm.Dialector, string, error) {
	switch {
	case rawURL == "":
		return nil, "", errors.New("database url is empty: use postgres://USER@HOST:PORT/DB or sqlite:PATH")
	case strings.HasPrefix(rawURL, "postgres://"), strings.HasPrefix(rawURL, "postgresql://"):
		u, err := url.Parse(rawURL)
		if err != nil || u.Host == "" || strings.Trim(u.Path, "/") == "" {
			return nil, "", fmt.Errorf("bad database url %q: want postgres://USER@HOST:PORT/DBNAME", redact(rawURL))
		}
		return postgres.Open(rawURL), "postgres", nil
	case strings.HasPrefix(rawURL, "sqlite:"), !strings.Contains(rawURL, "://"):
		path := strings.TrimPrefix(strings.TrimPrefix(rawURL, "sqlite:"), "//")
		if path == "" {
			return nil, "", fmt.Errorf("bad database url %q: sqlite: needs a file path, e.g. sqlite:.data/cloudimages.db", rawURL)
		}
		if path != ":memory:" {
			if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
				return nil, "", fmt.Errorf("database directory for %s: %w", path, err)
			}
		}
		// WAL lets readers run beside the writer; busy_timeout makes the API
		// and the worker wait for each other instead of failing; immediate
		// transactions take the write lock up front, so they never deadlock.
		dsn := "file:" + path + "?_pragma=busy_timeout(15000)&_pragma=journal_mode(WAL)&_pragma=foreign_keys(1)&_pragma=synchronous(NORMAL)&_txlock=immediate"
		return sqlite.Open(dsn), "sqlite", nil
	default:
		return nil, "", fmt.Errorf("bad database url %q: only postgres://… and sqlite:PATH are supported", redact(rawURL))
	}
}

// redact hides a password in a database URL before it is logged.
func redact(rawURL string) string {
	u, err := url.Parse(rawURL)
	if err != nil || u.User == nil {
		return rawURL
	}
	if _, has := u.User.Password(); has {
		u.User = url.UserPassword(u.User.Username(), "xxxxx")
	}
	return u.String()
}

var log = slog.Default
