package store

import (
	"context"
	"errors"
	"fmt"
	"time"

	"gorm.io/gorm"
	"gorm.io/gorm/clause"
)

// Distribution statuses, as in the contract.
const (
	DistributionRunning   = "RUNNING"
	DistributionReady     = "READY"
	DistributionPartial   = "PARTIAL"
	DistributionFailed    = "FAILED"
	DistributionCancelled = "CANCELLED"
)

// AllPoolsKey is the pool key of a distribution into every pool: the pools
// are resolved when it starts, so the set it names is "all of them".
const AllPoolsKey = "*"

// Distribution puts one image onto many pools: the first copy from the
// mirror, every later one from a node that holds a READY copy. The workflow
// (DistributeImageWorkflow) owns its status and its copies; the API only
// creates it. SourceKey and PoolKey make it idempotent: one that is not
// CANCELLED per source and pool set.
type Distribution struct {
	ID        string `gorm:"primaryKey;size:64"`
	Status    string `gorm:"size:16;not null"`
	SourceKey string `gorm:"size:2048;not null"`
	PoolKey   string `gorm:"not null"`
	// The request's source: CatalogID, or URL with Name and Checksum, or
	// SourceImageID, a READY image whose file is copied (Checksum is then
	// its file checksum).
	CatalogID     string `gorm:"size:100"`
	SourceImageID string `gorm:"size:64"`
	URL           string `gorm:"size:2048"`
	Name          string `gorm:"size:200"`
	Checksum      string `gorm:"size:200"`
	// PoolIDs are the pools asked for, or, with AllPools, those found when
	// the distribution started.
	PoolIDs      StringList `gorm:"type:text"`
	AllPools     bool
	MaxParallel  int
	ErrorMessage string `gorm:"size:4096"`
	WorkflowID   string `gorm:"size:200"`
	CreatedAt    time.Time
	UpdatedAt    time.Time

	Copies []DistributionCopy `gorm:"-"`
}

// Terminal reports whether the distribution has ended (a PARTIAL or
// FAILED one may still be posted again, which retries its failed pools).
func (d Distribution) Terminal() bool { return d.Status != DistributionRunning }

// MirrorBytes is how many bytes the mirror served for all the copies.
func (d Distribution) MirrorBytes() int64 {
	var n int64
	for _, c := range d.Copies {
		n += c.BytesFromMirror
	}
	return n
}

// DistributionCopy is one pool's copy in a distribution: its image, the
// image's status as the distribution last saw it, and where its bytes came
// from. Adopted copies were in the pool before (or started apart from) the
// distribution, which only waited for them.
type DistributionCopy struct {
	DistributionID  string `gorm:"primaryKey;size:64"`
	PoolID          string `gorm:"primaryKey;size:64"`
	ImageID         string `gorm:"size:64"`
	Status          string `gorm:"size:16;not null"`
	Source          string `gorm:"size:80"` // "mirror" or "node:NODE_ID"; "" until it starts
	Adopted         bool
	BytesFromMirror int64
	BytesFromPeers  int64
	ErrorCode       string `gorm:"size:64"`
	ErrorMessage    string `gorm:"size:4096"`
	UpdatedAt       time.Time
}

// CopySourceNode is the Source of a copy made from a node's READY copy.
func CopySourceNode(nodeID string) string { return "node:" + nodeID }

// CreateDistribution inserts d unless a distribution of the same source
// and pool set that is not CANCELLED exists; then it returns that one and
// created=false. The check is the schema's unique index, so concurrent
// callers get one distribution between them.
func (s *Store) CreateDistribution(ctx context.Context, d *Distribution) (existing Distribution, created bool, err error) {
	if d.Status == "" {
		d.Status = DistributionRunning
	}
	for range 5 {
		err = s.db.WithContext(ctx).Create(d).Error
		if err == nil {
			return *d, true, nil
		}
		if !isDuplicate(err) {
			return Distribution{}, false, err
		}
		var got Distribution
		ferr := s.db.WithContext(ctx).Where("source_key = ? AND pool_key = ? AND status <> ?", d.SourceKey, d.PoolKey, DistributionCancelled).
			Limit(1).Find(&got).Error
		if ferr != nil {
			return Distribution{}, false, ferr
		}
		if got.ID != "" {
			got, err = s.Distribution(ctx, got.ID)
			return got, false, err
		}
		if _, gerr := s.Distribution(ctx, d.ID); gerr == nil {
			return Distribution{}, false, fmt.Errorf("distribution %q: %w", d.ID, ErrExists)
		}
		// The one in the way was cancelled between our insert and our
		// look-up: try again.
	}
	return Distribution{}, false, err
}

// Distribution returns one distribution with its copies.
func (s *Store) Distribution(ctx context.Context, id string) (Distribution, error) {
	var d Distribution
	err := s.db.WithContext(ctx).First(&d, "id = ?", id).Error
	if errors.Is(err, gorm.ErrRecordNotFound) {
		return d, fmt.Errorf("distribution %q: %w", id, ErrNotFound)
	} else if err != nil {
		return d, err
	}
	err = s.db.WithContext(ctx).Where("distribution_id = ?", id).Order("pool_id").Find(&d.Copies).Error
	return d, err
}

// Distributions lists every distribution with its copies, newest first.
func (s *Store) Distributions(ctx context.Context) ([]Distribution, error) {
	var ds []Distribution
	if err := s.db.WithContext(ctx).Order("created_at DESC, id").Find(&ds).Error; err != nil {
		return nil, err
	}
	var copies []DistributionCopy
	if err := s.db.WithContext(ctx).Order("pool_id").Find(&copies).Error; err != nil {
		return nil, err
	}
	byID := make(map[string][]DistributionCopy, len(ds))
	for _, c := range copies {
		byID[c.DistributionID] = append(byID[c.DistributionID], c)
	}
	for i := range ds {
		ds[i].Copies = byID[ds[i].ID]
	}
	return ds, nil
}

// SaveCopy writes one copy of a distribution (inserted or replaced whole).
func (s *Store) SaveCopy(ctx context.Context, c DistributionCopy) error {
	c.UpdatedAt = time.Now().UTC()
	err := s.db.WithContext(ctx).Clauses(clause.OnConflict{UpdateAll: true}).Create(&c).Error
	if isForeignKey(err) {
		return fmt.Errorf("distribution %q: %w", c.DistributionID, ErrNotFound)
	}
	return err
}

// StartDistribution records the pools a distribution covers (all_pools is
// resolved when it starts) and sets it RUNNING.
func (s *Store) StartDistribution(ctx context.Context, id string, poolIDs []string) error {
	return s.setDistribution(ctx, id, map[string]any{"pool_ids": StringList(poolIDs), "status": DistributionRunning, "error_message": ""})
}

// EndDistribution records how a distribution ended.
func (s *Store) EndDistribution(ctx context.Context, id, status, message string) error {
	return s.setDistribution(ctx, id, map[string]any{"status": status, "error_message": message})
}

func (s *Store) setDistribution(ctx context.Context, id string, set map[string]any) error {
	set["updated_at"] = time.Now().UTC()
	res := s.db.WithContext(ctx).Model(&Distribution{}).Where("id = ?", id).Updates(set)
	if res.Error != nil {
		return res.Error
	}
	if res.RowsAffected == 0 {
		return fmt.Errorf("distribution %q: %w", id, ErrNotFound)
	}
	return nil
}

// RetryDistribution sets a PARTIAL or FAILED distribution RUNNING again, so
// that its workflow may retry the failed pools. retried is false when it was
// in another status (RUNNING, READY, CANCELLED): of many concurrent retries,
// one wins.
func (s *Store) RetryDistribution(ctx context.Context, id string) (retried bool, err error) {
	res := s.db.WithContext(ctx).Model(&Distribution{}).
		Where("id = ? AND status IN ?", id, []string{DistributionPartial, DistributionFailed}).
		Updates(map[string]any{"status": DistributionRunning, "error_message": "", "updated_at": time.Now().UTC()})
	return res.RowsAffected == 1, res.Error
}

// SetImageSource records where an image's bytes come from (SourceMirror or
// SourcePeer): a distribution's copy is made from a peer's file.
func (s *Store) SetImageSource(ctx context.Context, imageID, source string) error {
	res := s.db.WithContext(ctx).Model(&Image{}).Where("id = ?", imageID).Update("source", source)
	if res.Error == nil && res.RowsAffected == 0 {
		return fmt.Errorf("image %q: %w", imageID, ErrNotFound)
	}
	return res.Error
}

// DeleteDistribution forgets a distribution and its copies; their images
// stay.
func (s *Store) DeleteDistribution(ctx context.Context, id string) error {
	return s.db.WithContext(ctx).Transaction(func(tx *gorm.DB) error {
		if err := tx.Where("distribution_id = ?", id).Delete(&DistributionCopy{}).Error; err != nil {
			return err
		}
		res := tx.Where("id = ?", id).Delete(&Distribution{})
		if res.Error == nil && res.RowsAffected == 0 {
			return fmt.Errorf("distribution %q: %w", id, ErrNotFound)
		}
		return res.Error
	})
}

// ImageSourceKey is the source key of a distribution of a READY image
// (Distribution.SourceImageID): one distribution per image and pool set.
func ImageSourceKey(imageID string) string { return "image:" + imageID }
