package store

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"gorm.io/gorm"
	"gorm.io/gorm/clause"
)

// Subscription keeps the newest build of a catalog entry in some pools:
// a Temporal Schedule checks the vendor's checksum file every Every, and a
// new checksum is downloaded as a new image into each pool.
type Subscription struct {
	ID        string     `gorm:"primaryKey;size:64"`
	CatalogID string     `gorm:"size:100;not null"`
	PoolIDs   StringList `gorm:"type:text"`
	Every     string     `gorm:"size:32;not null"` // a Go duration, as the user wrote it ("6h")
	Keep      int        `gorm:"not null"`
	Paused    bool       `gorm:"not null"`

	LastCheckedAt *time.Time
	NextCheckAt   *time.Time
	// CurrentVersion and CurrentChecksum are of the newest build READY in
	// every pool of the subscription.
	CurrentVersion  string `gorm:"size:100"`
	CurrentChecksum string `gorm:"size:200"`
	// SeenChecksum and SeenVersion are the build the vendor's checksum
	// file named at the last check, with its validators: the next check
	// asks with If-None-Match / If-Modified-Since, and a 304 means the
	// same build.
	SeenChecksum         string `gorm:"size:200"`
	SeenVersion          string `gorm:"size:100"`
	ChecksumETag         string `gorm:"column:checksum_etag;size:300"`
	ChecksumLastModified string `gorm:"size:100"`
	LastError            string `gorm:"size:4096"`
	CreatedAt            time.Time
	UpdatedAt            time.Time
}

// SubscriptionEvent is one thing a subscription's check did.
type SubscriptionEvent struct {
	ID             int64     `gorm:"primaryKey;autoIncrement"`
	SubscriptionID string    `gorm:"size:64;not null"`
	At             time.Time `gorm:"not null"`
	Kind           string    `gorm:"size:32;not null"` // one of the Event* kinds
	PoolID         string    `gorm:"size:64"`
	ImageID        string    `gorm:"size:64"`
	Version        string    `gorm:"size:100"`
	Message        string    `gorm:"size:4096"`
}

// Kinds of subscription events.
const (
	EventNewBuild   = "new_build"   // the checksum file names a build not seen before
	EventDownload   = "download"    // a download of the build into a pool started
	EventLatest     = "latest"      // the pool's -latest file now names the build
	EventRemoved    = "removed"     // retention removed an older version
	EventError      = "error"       // a step failed; Message says which and why
	EventNotChanged = "not_changed" // the vendor's checksum file did not change
)

// LatestLink records which image a pool's stable "{catalog_id}-latest.{format}"
// file is a (hard) link to.
type LatestLink struct {
	PoolID    string `gorm:"primaryKey;size:64"`
	FileName  string `gorm:"primaryKey;size:255"`
	CatalogID string `gorm:"size:100;not null"`
	ImageID   string `gorm:"size:64;not null"`
	UpdatedAt time.Time
}

// CreateSubscription inserts a subscription. A subscription of the same
// catalog entry that already covers one of its pools is ErrExists: two
// would fight over the pool's versions and its -latest file.
func (s *Store) CreateSubscription(ctx context.Context, sub *Subscription) error {
	return s.db.WithContext(ctx).Transaction(func(tx *gorm.DB) error {
		var others []Subscription
		if err := tx.Where("catalog_id = ?", sub.CatalogID).Find(&others).Error; err != nil {
			return err
		}
		for _, o := range others {
			for _, p := range sub.PoolIDs {
				if slices.Contains(o.PoolIDs, p) {
					return fmt.Errorf("subscription %q already keeps %s current in pool %q: %w", o.ID, sub.CatalogID, p, ErrExists)
				}
			}
		}
		if err := tx.Create(sub).Error; err != nil {
			if isDuplicate(err) {
				return fmt.Errorf("subscription %q: %w", sub.ID, ErrExists)
			}
			return err
		}
		return nil
	})
}

// Subscription returns one subscription.
func (s *Store) Subscription(ctx context.Context, id string) (Subscription, error) {
	var sub Subscription
	err := s.db.WithContext(ctx).First(&sub, "id = ?", id).Error
	if errors.Is(err, gorm.ErrRecordNotFound) {
		return sub, fmt.Errorf("subscription %q: %w", id, ErrNotFound)
	}
	return sub, err
}

// Subscriptions lists every subscription, oldest first.
func (s *Store) Subscriptions(ctx context.Context) ([]Subscription, error) {
	var subs []Subscription
	err := s.db.WithContext(ctx).Order("created_at, id").Find(&subs).Error
	return subs, err
}

// SubscriptionChange is what PATCH may change; nil fields stay.
type SubscriptionChange struct {
	Paused      *bool
	Every       *string
	Keep        *int
	NextCheckAt *time.Time
}

// UpdateSubscription applies a change and returns the subscription.
func (s *Store) UpdateSubscription(ctx context.Context, id string, c SubscriptionChange) (Subscription, error) {
	set := map[string]any{}
	if c.Paused != nil {
		set["paused"] = *c.Paused
	}
	if c.Every != nil {
		set["every"] = *c.Every
	}
	if c.Keep != nil {
		set["keep"] = *c.Keep
	}
	if c.NextCheckAt != nil {
		set["next_check_at"] = c.NextCheckAt.UTC()
	}
	if len(set) > 0 {
		res := s.db.WithContext(ctx).Model(&Subscription{}).Where("id = ?", id).Updates(set)
		if res.Error != nil {
			return Subscription{}, res.Error
		}
	}
	return s.Subscription(ctx, id)
}

// DeleteSubscription removes a subscription and its events; its images stay.
func (s *Store) DeleteSubscription(ctx context.Context, id string) error {
	return s.db.WithContext(ctx).Transaction(func(tx *gorm.DB) error {
		if err := tx.Where("subscription_id = ?", id).Delete(&SubscriptionEvent{}).Error; err != nil {
			return err
		}
		res := tx.Delete(&Subscription{}, "id = ?", id)
		if res.Error != nil {
			return res.Error
		}
		if res.RowsAffected == 0 {
			return fmt.Errorf("subscription %q: %w", id, ErrNotFound)
		}
		return nil
	})
}

// CheckedBuild is what a check found in the vendor's checksum file.
type CheckedBuild struct {
	Checksum     string
	Version      string
	ETag         string
	LastModified string
}

// RecordCheck records that a subscription was checked now and the build
// (and validators) its checksum file named.
func (s *Store) RecordCheck(ctx context.Context, id string, b CheckedBuild) error {
	return s.updateSubscription(ctx, id, map[string]any{"last_checked_at": time.Now().UTC(),
		"seen_checksum": b.Checksum, "seen_version": b.Version, "checksum_etag": b.ETag, "checksum_last_modified": b.LastModified})
}

// RecordOutcome records how a check ended: the build now current in every
// pool (when it is), and the error of the check ("" when it went well).
func (s *Store) RecordOutcome(ctx context.Context, id, version, checksum, lastError string) error {
	set := map[string]any{"last_error": lastError, "last_checked_at": time.Now().UTC()}
	if version != "" {
		set["current_version"], set["current_checksum"] = version, checksum
	}
	return s.updateSubscription(ctx, id, set)
}

func (s *Store) updateSubscription(ctx context.Context, id string, set map[string]any) error {
	res := s.db.WithContext(ctx).Model(&Subscription{}).Where("id = ?", id).Updates(set)
	if res.Error != nil {
		return res.Error
	}
	if res.RowsAffected == 0 {
		return fmt.Errorf("subscription %q: %w", id, ErrNotFound)
	}
	return nil
}

// AddSubscriptionEvent records one thing a check did. A subscription
// deleted meanwhile takes no events, and that is no error.
func (s *Store) AddSubscriptionEvent(ctx context.Context, e SubscriptionEvent) error {
	if e.At.IsZero() {
		e.At = time.Now().UTC()
	}
	err := s.db.WithContext(ctx).Create(&e).Error
	if isForeignKey(err) {
		return nil
	}
	return err
}

// SubscriptionEvents lists a subscription's newest events first, at most limit.
func (s *Store) SubscriptionEvents(ctx context.Context, id string, limit int) ([]SubscriptionEvent, error) {
	var evs []SubscriptionEvent
	err := s.db.WithContext(ctx).Where("subscription_id = ?", id).Order("id DESC").Limit(limit).Find(&evs).Error
	return evs, err
}

// NewestCatalogImage returns the newest live or READY image of a catalog
// entry in a pool, whichever build it is: what POST /v1/images with that
// catalog_id answers with.
func (s *Store) NewestCatalogImage(ctx context.Context, poolID, catalogID string) (Image, bool, error) {
	var img Image
	err := s.db.WithContext(ctx).Where("pool_id = ? AND catalog_id = ? AND status IN ?", poolID, catalogID, liveOrReady).
		Where(`source_key = ? OR source_key LIKE ? ESCAPE '\'`, "catalog:"+catalogID, "catalog:"+escapeLike(catalogID)+"@%").
		Order("created_at DESC, id").Limit(1).Find(&img).Error
	return img, img.ID != "", err
}

// ReadyVersions lists the READY images of a catalog entry's builds that a
// subscription manages in a pool (source key "catalog:ID@CHECKSUM"),
// newest first.
func (s *Store) ReadyVersions(ctx context.Context, poolID, catalogID string) ([]Image, error) {
	var imgs []Image
	err := s.db.WithContext(ctx).Where("pool_id = ? AND catalog_id = ? AND status = ?", poolID, catalogID, StatusReady).
		Where(`source_key LIKE ? ESCAPE '\'`, "catalog:"+escapeLike(catalogID)+"@%").
		Order("ready_at DESC, created_at DESC, id").Find(&imgs).Error
	return imgs, err
}

func escapeLike(s string) string {
	return strings.NewReplacer(`\`, `\\`, `%`, `\%`, `_`, `\_`).Replace(s)
}

// ReadyImageWithChecksum returns a READY image of a catalog entry in a
// pool whose bytes have the given checksum, whatever its source key (an
// image downloaded before the pool was subscribed counts).
func (s *Store) ReadyImageWithChecksum(ctx context.Context, poolID, catalogID, checksum string) (Image, bool, error) {
	var img Image
	err := s.db.WithContext(ctx).Where("pool_id = ? AND catalog_id = ? AND status = ? AND checksum = ?",
		poolID, catalogID, StatusReady, checksum).Order("ready_at DESC, id").Limit(1).Find(&img).Error
	return img, img.ID != "", err
}

// SetPinned pins or unpins an image.
func (s *Store) SetPinned(ctx context.Context, id string, pinned bool) (Image, error) {
	res := s.db.WithContext(ctx).Model(&Image{}).Where("id = ?", id).Update("pinned", pinned)
	if res.Error != nil {
		return Image{}, res.Error
	}
	return s.Image(ctx, id)
}

// RecordVersion records the build a live image is, once its checksum is known.
func (s *Store) RecordVersion(ctx context.Context, id, version string) error {
	return s.updateLive(ctx, id, "record the version", map[string]any{"version": version})
}

// SetLatestLink records that a pool's link fileName now names imageID.
func (s *Store) SetLatestLink(ctx context.Context, l LatestLink) error {
	l.UpdatedAt = time.Now().UTC()
	return s.db.WithContext(ctx).Clauses(clause.OnConflict{
		Columns:   []clause.Column{{Name: "pool_id"}, {Name: "file_name"}},
		DoUpdates: clause.AssignmentColumns([]string{"catalog_id", "image_id", "updated_at"}),
	}).Create(&l).Error
}

// LatestLinks lists every pool's -latest links.
func (s *Store) LatestLinks(ctx context.Context) ([]LatestLink, error) {
	var ls []LatestLink
	err := s.db.WithContext(ctx).Order("pool_id, file_name").Find(&ls).Error
	return ls, err
}

// LatestImageIDs returns the ids of the images a -latest link names.
func (s *Store) LatestImageIDs(ctx context.Context) (map[string]bool, error) {
	ls, err := s.LatestLinks(ctx)
	if err != nil {
		return nil, err
	}
	ids := make(map[string]bool, len(ls))
	for _, l := range ls {
		ids[l.ImageID] = true
	}
	return ids, nil
}

// DropLatestLinksTo forgets the links that name an image whose file is
// being removed.
func (s *Store) DropLatestLinksTo(ctx context.Context, imageID string) ([]LatestLink, error) {
	var ls []LatestLink
	if err := s.db.WithContext(ctx).Where("image_id = ?", imageID).Find(&ls).Error; err != nil {
		return nil, err
	}
	if len(ls) == 0 {
		return nil, nil
	}
	return ls, s.db.WithContext(ctx).Where("image_id = ?", imageID).Delete(&LatestLink{}).Error
}
