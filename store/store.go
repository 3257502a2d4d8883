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
	"regexp"
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
//
// Several processes may open one SQLite file at the same moment (the API
// and the worker starting together). busy_timeout makes most waits
// invisible, but SQLite answers SQLITE_BUSY at once, without waiting, where
// waiting could deadlock (two connections switching a new file to WAL, or
// upgrading read locks together); so Open tries again, for up to
// openRetryFor, while the answer is "busy".
func Open(ctx context.Context, rawURL string) (*Store, error) {
	dialector, dialect, err := dialectorFor(rawURL)
	if err != nil {
		return nil, err
	}
	deadline := time.Now().Add(openRetryFor)
	wait := 20 * time.Millisecond
	for attempt := 1; ; attempt++ {
		s, err := open(ctx, rawURL, dialector, dialect)
		if err == nil || dialect != "sqlite" || !isBusy(err) || time.Now().Add(wait).After(deadline) {
			return s, err
		}
		log().Warn("the SQLite database is busy; trying again", "attempt", attempt, "error", err)
		select {
		case <-ctx.Done():
			return nil, err
		case <-time.After(wait):
		}
		wait = min(2*wait, time.Second)
	}
}

// openRetryFor bounds how long Open tries again on a busy SQLite file.
const openRetryFor = time.Minute

func open(ctx context.Context, rawURL string, dialector gorm.Dialector, dialect string) (*Store, error) {
	db, err := gorm.Open(dialector, &gorm.Config{
		Logger:         logger.Discard,
		TranslateError: true,
		NowFunc:        func() time.Time { return time.Now().UTC() },
	})
	if err != nil {
		return nil, redactf(rawURL, "open database %s: %w", rawURL, err)
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
		return nil, redactf(rawURL, "database %s does not answer: %w (is it running, and is --database-url right?)", rawURL, err)
	}
	s := &Store{db: db, dialect: dialect}
	if err := s.migrate(ctx); err != nil {
		sqlDB.Close()
		return nil, redactf(rawURL, "migrate database %s: %w", rawURL, err)
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
			return nil, "", redactf(rawURL, "bad database url %q: want postgres://USER@HOST:PORT/DBNAME", rawURL)
		}
		return postgres.Open(rawURL), "postgres", nil
	case keyValueDSN.MatchString(rawURL):
		return nil, "", redactf(rawURL, "bad database url %q: key=value DSNs are not supported: write it as postgres://USER:PASSWORD@HOST:PORT/DBNAME?sslmode=…", rawURL)
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
		return nil, "", redactf(rawURL, "bad database url %q: only postgres://… and sqlite:PATH are supported", rawURL)
	}
}

// Redact hides the passwords in a database URL or DSN, or in a message
// that quotes one: the user info of postgres://USER:PASSWORD@HOST and every
// password=VALUE (a query parameter or a key=value DSN). It works on text
// that does not parse, as a bad URL's error message quotes it.
func Redact(s string) string {
	s = userinfoPassword.ReplaceAllString(s, "${1}xxxxx@")
	return keyPassword.ReplaceAllString(s, "${1}xxxxx")
}

var (
	// keyValueDSN is libpq's "host=… user=… password=…" form.
	keyValueDSN = regexp.MustCompile(`^\s*[a-z_]+=\S*(\s+[a-z_]+=|\s*$)`)
	// userinfoPassword is scheme://user:password@, up to the last @ of the
	// word (a password with an unescaped @ is still hidden whole).
	userinfoPassword = regexp.MustCompile(`([a-zA-Z][a-zA-Z0-9+.-]*://[^\s:/?#@]*:)[^\s]*@`)
	// keyPassword is password=VALUE, VALUE quoted ('…', as libpq allows) or
	// running to the next &, space or quote.
	keyPassword = regexp.MustCompile(`(?i)(\bpassword=)('(?:[^'\\]|\\.)*'|[^&\s'"]*)`)
)

// redactedError is an error whose message went through Redact; it still
// wraps the driver's error for errors.Is and errors.As.
type redactedError struct {
	msg string
	err error
}

func (e *redactedError) Error() string { return e.msg }
func (e *redactedError) Unwrap() error { return e.err }

// redactf is fmt.Errorf with every password of rawURL hidden from the
// message, whichever form the driver's error quotes it in.
func redactf(rawURL string, format string, args ...any) error {
	err := fmt.Errorf(format, args...)
	msg := Redact(err.Error())
	for _, pw := range passwords(rawURL) {
		msg = strings.ReplaceAll(msg, pw, "xxxxx")
	}
	return &redactedError{msg: msg, err: errors.Unwrap(err)}
}

// passwords returns the passwords in rawURL, as written and decoded.
func passwords(rawURL string) []string {
	var out []string
	add := func(pw string) {
		if len(pw) >= 3 { // shorter ones would blank out unrelated text
			out = append(out, pw)
		}
	}
	if m := regexp.MustCompile(`://[^\s:/?#@]*:([^\s]*)@`).FindStringSubmatch(rawURL); m != nil {
		add(m[1])
		if dec, err := url.PathUnescape(m[1]); err == nil && dec != m[1] {
			add(dec)
		}
	}
	for _, m := range keyPassword.FindAllStringSubmatch(rawURL, -1) {
		add(strings.Trim(m[2], "'"))
		if dec, err := url.QueryUnescape(m[2]); err == nil && dec != m[2] {
			add(dec)
		}
	}
	return out
}

var log = slog.Default
