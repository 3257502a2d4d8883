package store

import (
	"context"
	"fmt"
	"strings"
	"time"

	"gorm.io/gorm"
)

// migrations are applied in order, each once, recorded in schema_migrations.
// Append new ones; never edit one that has shipped. {{time}} and {{bool}}
// stand for the dialect's types.
var migrations = []string{
	// 1: the initial schema.
	`CREATE TABLE nodes (
		id VARCHAR(64) PRIMARY KEY,
		name VARCHAR(200) NOT NULL DEFAULT '',
		address VARCHAR(300) NOT NULL,
		status VARCHAR(16) NOT NULL DEFAULT 'unknown',
		last_seen_at {{time}},
		pools TEXT NOT NULL DEFAULT '[]',
		active_downloads INTEGER NOT NULL DEFAULT 0,
		created_at {{time}} NOT NULL,
		updated_at {{time}} NOT NULL
	);
	CREATE TABLE pools (
		id VARCHAR(64) PRIMARY KEY,
		name VARCHAR(200) NOT NULL DEFAULT '',
		type VARCHAR(16) NOT NULL,
		shared {{bool}} NOT NULL DEFAULT FALSE,
		created_at {{time}} NOT NULL,
		updated_at {{time}} NOT NULL
	);
	CREATE TABLE pool_nodes (
		pool_id VARCHAR(64) NOT NULL REFERENCES pools(id) ON DELETE CASCADE,
		node_id VARCHAR(64) NOT NULL REFERENCES nodes(id) ON DELETE CASCADE,
		position INTEGER NOT NULL DEFAULT 0,
		PRIMARY KEY (pool_id, node_id)
	);
	CREATE INDEX pool_nodes_node ON pool_nodes(node_id);
	CREATE TABLE images (
		id VARCHAR(64) PRIMARY KEY,
		name VARCHAR(200) NOT NULL DEFAULT '',
		catalog_id VARCHAR(100) NOT NULL DEFAULT '',
		source_url TEXT NOT NULL DEFAULT '',
		source_key TEXT NOT NULL,
		pool_id VARCHAR(64) NOT NULL REFERENCES pools(id) ON DELETE CASCADE,
		node_id VARCHAR(64) NOT NULL DEFAULT '',
		file_name VARCHAR(255) NOT NULL DEFAULT '',
		path TEXT NOT NULL DEFAULT '',
		status VARCHAR(16) NOT NULL,
		size_bytes BIGINT NOT NULL DEFAULT 0,
		checksum VARCHAR(200) NOT NULL DEFAULT '',
		unverified {{bool}} NOT NULL DEFAULT FALSE,
		bytes_done BIGINT NOT NULL DEFAULT 0,
		bytes_total BIGINT NOT NULL DEFAULT 0,
		bytes_per_second DOUBLE PRECISION NOT NULL DEFAULT 0,
		attempt INTEGER NOT NULL DEFAULT 0,
		progress_node_id VARCHAR(64) NOT NULL DEFAULT '',
		error_code VARCHAR(64) NOT NULL DEFAULT '',
		error_message TEXT NOT NULL DEFAULT '',
		workflow_id VARCHAR(200) NOT NULL DEFAULT '',
		created_at {{time}} NOT NULL,
		updated_at {{time}} NOT NULL,
		ready_at {{time}}
	);
	CREATE INDEX images_pool_status ON images(pool_id, status);
	CREATE INDEX images_status ON images(status);
	-- Idempotency lives here: one live-or-READY image per source and pool,
	-- and one per file name in a pool, whatever races the callers run.
	CREATE UNIQUE INDEX images_one_live_source ON images(pool_id, source_key)
		WHERE status IN ('PENDING', 'DOWNLOADING', 'VERIFYING', 'READY');
	CREATE UNIQUE INDEX images_one_live_file ON images(pool_id, file_name)
		WHERE status IN ('PENDING', 'DOWNLOADING', 'VERIFYING', 'READY')`,
	// 2: free and total bytes of each pool, as the node's agent reports them.
	`ALTER TABLE nodes ADD COLUMN pool_space TEXT NOT NULL DEFAULT '{}'`,
	// 3: the failovers of a finished download, kept after its workflow ends.
	`ALTER TABLE images ADD COLUMN failovers TEXT NOT NULL DEFAULT '[]'`,
	// 4: what the published file is (found by inspecting it), how its source
	// was compressed, the checksums of the source and of the file, and the
	// format a request declared (checked by the node, kept for a restart).
	`ALTER TABLE images ADD COLUMN format VARCHAR(16) NOT NULL DEFAULT '';
	ALTER TABLE images ADD COLUMN virtual_size_bytes BIGINT NOT NULL DEFAULT 0;
	ALTER TABLE images ADD COLUMN compression VARCHAR(16) NOT NULL DEFAULT '';
	ALTER TABLE images ADD COLUMN source_checksum VARCHAR(200) NOT NULL DEFAULT '';
	ALTER TABLE images ADD COLUMN file_checksum VARCHAR(200) NOT NULL DEFAULT '';
	ALTER TABLE images ADD COLUMN declared_format VARCHAR(16) NOT NULL DEFAULT ''`,
	// 5: the format a pool wants its images in ('' keeps what the vendor
	// ships), and CONVERTING, a live status: the indexes that keep one live
	// image per source and per file name must count it too.
	`ALTER TABLE pools ADD COLUMN image_format VARCHAR(16) NOT NULL DEFAULT '';
	DROP INDEX images_one_live_source;
	DROP INDEX images_one_live_file;
	CREATE UNIQUE INDEX images_one_live_source ON images(pool_id, source_key)
		WHERE status IN ('PENDING', 'DOWNLOADING', 'VERIFYING', 'CONVERTING', 'READY');
	CREATE UNIQUE INDEX images_one_live_file ON images(pool_id, file_name)
		WHERE status IN ('PENDING', 'DOWNLOADING', 'VERIFYING', 'CONVERTING', 'READY')`,
	// 6: transfer windows (issue 17): a pool's daily windows (a JSON array of
	// "HH:MM-HH:MM") and their IANA time zone; a PENDING image's wait for
	// the next window, until when and why.
	`ALTER TABLE pools ADD COLUMN transfer_windows TEXT NOT NULL DEFAULT '[]';
	ALTER TABLE pools ADD COLUMN time_zone VARCHAR(64) NOT NULL DEFAULT '';
	ALTER TABLE images ADD COLUMN waiting_until {{time}};
	ALTER TABLE images ADD COLUMN waiting_message TEXT NOT NULL DEFAULT ''`,
	// 7: mirror lists and source credentials (issue 17): how many bytes each
	// mirror of the download served (progress), and the name — never the
	// secret — of the worker's source credential the download uses.
	`ALTER TABLE images ADD COLUMN mirror_bytes TEXT NOT NULL DEFAULT '[]';
	ALTER TABLE images ADD COLUMN credential VARCHAR(64) NOT NULL DEFAULT ''`,
	// 8: signed checksum files (issue 16): what the signature of the vendor's
	// checksum file said ('' for images from before it was checked).
	`ALTER TABLE images ADD COLUMN signature VARCHAR(16) NOT NULL DEFAULT ''`,
	// 9: subscriptions (issue 16): a subscription keeps the newest build of a
	// catalog entry in its pools. An image gains the vendor build it is
	// (version) and whether retention must leave it alone (pinned);
	// latest_links names, per pool, the image its stable
	// "{catalog_id}-latest.{format}" file is a link to; subscription_events
	// keeps what the checks did (downloads, links, removals, errors).
	`CREATE TABLE subscriptions (
		id VARCHAR(64) PRIMARY KEY,
		catalog_id VARCHAR(100) NOT NULL,
		pool_ids TEXT NOT NULL DEFAULT '[]',
		every VARCHAR(32) NOT NULL,
		keep INTEGER NOT NULL,
		paused {{bool}} NOT NULL DEFAULT FALSE,
		last_checked_at {{time}},
		next_check_at {{time}},
		current_version VARCHAR(100) NOT NULL DEFAULT '',
		current_checksum VARCHAR(200) NOT NULL DEFAULT '',
		seen_checksum VARCHAR(200) NOT NULL DEFAULT '',
		seen_version VARCHAR(100) NOT NULL DEFAULT '',
		checksum_etag VARCHAR(300) NOT NULL DEFAULT '',
		checksum_last_modified VARCHAR(100) NOT NULL DEFAULT '',
		last_error TEXT NOT NULL DEFAULT '',
		created_at {{time}} NOT NULL,
		updated_at {{time}} NOT NULL
	);
	CREATE TABLE subscription_events (
		id INTEGER PRIMARY KEY {{autoincrement}},
		subscription_id VARCHAR(64) NOT NULL REFERENCES subscriptions(id) ON DELETE CASCADE,
		at {{time}} NOT NULL,
		kind VARCHAR(32) NOT NULL,
		pool_id VARCHAR(64) NOT NULL DEFAULT '',
		image_id VARCHAR(64) NOT NULL DEFAULT '',
		version VARCHAR(100) NOT NULL DEFAULT '',
		message TEXT NOT NULL DEFAULT ''
	);
	CREATE INDEX subscription_events_subscription ON subscription_events(subscription_id, id);
	CREATE TABLE latest_links (
		pool_id VARCHAR(64) NOT NULL REFERENCES pools(id) ON DELETE CASCADE,
		file_name VARCHAR(255) NOT NULL,
		catalog_id VARCHAR(100) NOT NULL,
		image_id VARCHAR(64) NOT NULL,
		updated_at {{time}} NOT NULL,
		PRIMARY KEY (pool_id, file_name)
	);
	ALTER TABLE images ADD COLUMN version VARCHAR(100) NOT NULL DEFAULT '';
	ALTER TABLE images ADD COLUMN pinned {{bool}} NOT NULL DEFAULT FALSE;
	CREATE INDEX images_pool_catalog ON images(pool_id, catalog_id)`,
	// 10: uploads (issue 18): where an image's bytes came from, "mirror",
	// "peer" or "upload"; every image before uploads came from a mirror.
	`ALTER TABLE images ADD COLUMN source VARCHAR(16) NOT NULL DEFAULT 'mirror'`,
	// 11: distributions (issue 15): one image onto many pools, fetched from
	// the mirror once and copied between nodes. source_key and pool_key
	// (the sorted pool ids, or "*" for all pools) make a distribution
	// idempotent: one that is not CANCELLED per source and pool set. Each
	// copy is one pool's image; source says where its bytes came from
	// ("mirror" or "node:ID").
	`CREATE TABLE distributions (
		id VARCHAR(64) PRIMARY KEY,
		status VARCHAR(16) NOT NULL,
		source_key TEXT NOT NULL,
		pool_key TEXT NOT NULL,
		catalog_id VARCHAR(100) NOT NULL DEFAULT '',
		url TEXT NOT NULL DEFAULT '',
		name VARCHAR(200) NOT NULL DEFAULT '',
		checksum VARCHAR(200) NOT NULL DEFAULT '',
		pool_ids TEXT NOT NULL DEFAULT '[]',
		all_pools {{bool}} NOT NULL DEFAULT FALSE,
		max_parallel INTEGER NOT NULL DEFAULT 4,
		error_message TEXT NOT NULL DEFAULT '',
		workflow_id VARCHAR(200) NOT NULL DEFAULT '',
		created_at {{time}} NOT NULL,
		updated_at {{time}} NOT NULL
	);
	CREATE UNIQUE INDEX distributions_one_live ON distributions(source_key, pool_key)
		WHERE status <> 'CANCELLED';
	CREATE TABLE distribution_copies (
		distribution_id VARCHAR(64) NOT NULL REFERENCES distributions(id) ON DELETE CASCADE,
		pool_id VARCHAR(64) NOT NULL,
		image_id VARCHAR(64) NOT NULL DEFAULT '',
		status VARCHAR(16) NOT NULL,
		source VARCHAR(80) NOT NULL DEFAULT '',
		adopted {{bool}} NOT NULL DEFAULT FALSE,
		bytes_from_mirror BIGINT NOT NULL DEFAULT 0,
		bytes_from_peers BIGINT NOT NULL DEFAULT 0,
		error_code VARCHAR(64) NOT NULL DEFAULT '',
		error_message TEXT NOT NULL DEFAULT '',
		updated_at {{time}} NOT NULL,
		PRIMARY KEY (distribution_id, pool_id)
	)`,
	// 12: a distribution of an image already in a pool (an upload, in an
	// air-gapped cluster): the image it copies; '' for a catalog entry or URL.
	`ALTER TABLE distributions ADD COLUMN source_image_id VARCHAR(64) NOT NULL DEFAULT ''`,
}

// migrate brings the schema up to date. It is safe to run twice and from
// several processes at once: PostgreSQL serialises it with an advisory lock,
// SQLite with an immediate (write-locked) transaction.
func (s *Store) migrate(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	db := s.db.WithContext(ctx)
	if s.dialect == "postgres" {
		return db.Connection(func(conn *gorm.DB) error {
			const lockID = 0x636c6f7564 // "cloud"
			if err := conn.Exec("SELECT pg_advisory_lock(?)", lockID).Error; err != nil {
				return err
			}
			defer conn.Exec("SELECT pg_advisory_unlock(?)", lockID)
			return conn.Transaction(s.applyMigrations)
		})
	}
	return db.Transaction(s.applyMigrations)
}

func (s *Store) applyMigrations(tx *gorm.DB) error {
	if err := tx.Exec(s.sql(`CREATE TABLE IF NOT EXISTS schema_migrations (
		version INTEGER PRIMARY KEY,
		applied_at {{time}} NOT NULL
	)`)).Error; err != nil {
		return err
	}
	var current int
	if err := tx.Raw("SELECT COALESCE(MAX(version), 0) FROM schema_migrations").Scan(&current).Error; err != nil {
		return err
	}
	for i := current; i < len(migrations); i++ {
		for _, stmt := range splitStatements(s.sql(migrations[i])) {
			if err := tx.Exec(stmt).Error; err != nil {
				return fmt.Errorf("migration %d: %w", i+1, err)
			}
		}
		if err := tx.Exec("INSERT INTO schema_migrations (version, applied_at) VALUES (?, ?)", i+1, time.Now().UTC()).Error; err != nil {
			return fmt.Errorf("record migration %d: %w", i+1, err)
		}
	}
	return nil
}

// SchemaVersion is the number of migrations applied.
func (s *Store) SchemaVersion(ctx context.Context) (int, error) {
	var v int
	err := s.db.WithContext(ctx).Raw("SELECT COALESCE(MAX(version), 0) FROM schema_migrations").Scan(&v).Error
	return v, err
}

func (s *Store) sql(q string) string {
	timeType, boolType, autoinc := "TIMESTAMPTZ", "BOOLEAN", "GENERATED BY DEFAULT AS IDENTITY"
	if s.dialect == "sqlite" {
		timeType, boolType, autoinc = "DATETIME", "BOOLEAN", "AUTOINCREMENT"
	}
	return strings.NewReplacer("{{time}}", timeType, "{{bool}}", boolType, "{{autoincrement}}", autoinc).Replace(q)
}

func splitStatements(q string) []string {
	var out []string
	for _, stmt := range strings.Split(q, ";") {
		var lines []string
		for _, l := range strings.Split(stmt, "\n") {
			if t := strings.TrimSpace(l); t != "" && !strings.HasPrefix(t, "--") {
				lines = append(lines, l)
			}
		}
		if len(lines) > 0 {
			out = append(out, strings.Join(lines, "\n"))
		}
	}
	return out
}
