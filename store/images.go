package store

import (
	"context"
	"errors"
	"fmt"
	"time"

	"gorm.io/gorm"
)

var liveOrReady = []string{StatusPending, StatusDownloading, StatusVerifying, StatusReady}

// allowedFrom says, for each status, the statuses an image may come from.
// READY, FAILED and CANCELLED are terminal: nothing leaves them, so a READY
// image never goes back to DOWNLOADING and a CANCELLED one never becomes READY.
var allowedFrom = map[string][]string{
	StatusPending:     {StatusPending, StatusDownloading, StatusVerifying},
	StatusDownloading: {StatusPending, StatusDownloading, StatusVerifying},
	StatusVerifying:   {StatusPending, StatusDownloading, StatusVerifying},
	StatusReady:       {StatusPending, StatusDownloading, StatusVerifying},
	StatusFailed:      {StatusPending, StatusDownloading, StatusVerifying},
	StatusCancelled:   {StatusPending, StatusDownloading, StatusVerifying},
}

// CreateImage inserts img unless a live or READY image of the same source is
// already in the pool; then it returns that one and created=false. The check
// is the schema's unique index, so concurrent callers get one image between
// them. A different source that would use the same file name in the pool is
// ErrFileNameTaken.
func (s *Store) CreateImage(ctx context.Context, img *Image) (existing Image, created bool, err error) {
	if img.Status == "" {
		img.Status = StatusPending
	}
	for range 5 {
		err = s.db.WithContext(ctx).Create(img).Error
		if err == nil {
			return *img, true, nil
		}
		if !isDuplicate(err) {
			if isForeignKey(err) {
				return Image{}, false, fmt.Errorf("pool %q: %w", img.PoolID, ErrNotFound)
			}
			return Image{}, false, err
		}
		if got, ok, ferr := s.findLive(ctx, "pool_id = ? AND source_key = ?", img.PoolID, img.SourceKey); ferr != nil {
			return Image{}, false, ferr
		} else if ok {
			return got, false, nil
		}
		if got, ok, ferr := s.findLive(ctx, "pool_id = ? AND file_name = ?", img.PoolID, img.FileName); ferr != nil {
			return Image{}, false, ferr
		} else if ok {
			return got, false, fmt.Errorf("image %q (%s) already uses file name %q in pool %q: %w",
				got.ID, got.Status, img.FileName, img.PoolID, ErrFileNameTaken)
		}
		if got, gerr := s.Image(ctx, img.ID); gerr == nil {
			return got, false, fmt.Errorf("image %q: %w", img.ID, ErrExists)
		}
		// The image in the way turned terminal between our insert and our
		// look-up: try again.
	}
	return Image{}, false, err
}

func (s *Store) findLive(ctx context.Context, where string, args ...any) (Image, bool, error) {
	var img Image
	err := s.db.WithContext(ctx).Where(where, args...).Where("status IN ?", liveOrReady).
		Order("created_at").Limit(1).Find(&img).Error
	if err != nil {
		return img, false, err
	}
	return img, img.ID != "", nil
}

// LiveImage returns the live or READY image of a source in a pool, if any.
func (s *Store) LiveImage(ctx context.Context, poolID, sourceKey string) (Image, bool, error) {
	return s.findLive(ctx, "pool_id = ? AND source_key = ?", poolID, sourceKey)
}

// Image returns one image.
func (s *Store) Image(ctx context.Context, id string) (Image, error) {
	var img Image
	err := s.db.WithContext(ctx).First(&img, "id = ?", id).Error
	if errors.Is(err, gorm.ErrRecordNotFound) {
		return img, fmt.Errorf("image %q: %w", id, ErrNotFound)
	}
	return img, err
}

// ImageFilter narrows Images; empty fields match everything.
type ImageFilter struct {
	PoolID string
	Status string
	Live   bool // only images that are not terminal
}

// Images lists images, newest first.
func (s *Store) Images(ctx context.Context, f ImageFilter) ([]Image, error) {
	q := s.db.WithContext(ctx).Order("created_at DESC, id")
	if f.PoolID != "" {
		q = q.Where("pool_id = ?", f.PoolID)
	}
	if f.Status != "" {
		q = q.Where("status = ?", f.Status)
	}
	if f.Live {
		q = q.Where("status IN ?", []string{StatusPending, StatusDownloading, StatusVerifying})
	}
	var imgs []Image
	err := q.Find(&imgs).Error
	return imgs, err
}

// Transition moves an image to status `to`, setting fields alongside, if
// the move is allowed from its current status. Moving to the status it
// already has is fine (activities retry); any other refused move is
// ErrTransition, and an unknown image ErrNotFound.
func (s *Store) Transition(ctx context.Context, id, to string, fields map[string]any) error {
	from, ok := allowedFrom[to]
	if !ok {
		return fmt.Errorf("unknown status %q", to)
	}
	set := map[string]any{"status": to}
	for k, v := range fields {
		set[k] = v
	}
	if to == StatusReady {
		if _, has := set["ready_at"]; !has {
			set["ready_at"] = time.Now().UTC()
		}
	}
	res := s.db.WithContext(ctx).Model(&Image{}).Where("id = ? AND status IN ?", id, from).Updates(set)
	if res.Error != nil {
		return res.Error
	}
	if res.RowsAffected > 0 {
		return nil
	}
	cur, err := s.Image(ctx, id)
	if err != nil {
		return err
	}
	if cur.Status == to {
		return nil
	}
	return fmt.Errorf("image %q is %s and cannot become %s: %w", id, cur.Status, to, ErrTransition)
}

// Progress is the live progress of a download.
type Progress struct {
	BytesDone      int64
	BytesTotal     int64
	BytesPerSecond float64
	Attempt        int
	NodeID         string
}

// UpdateProgress records progress of an image that is still live; for a
// terminal image it does nothing.
func (s *Store) UpdateProgress(ctx context.Context, id string, p Progress) error {
	return s.db.WithContext(ctx).Model(&Image{}).
		Where("id = ? AND status IN ?", id, []string{StatusPending, StatusDownloading, StatusVerifying}).
		Updates(map[string]any{
			"bytes_done":       p.BytesDone,
			"bytes_total":      p.BytesTotal,
			"bytes_per_second": p.BytesPerSecond,
			"attempt":          p.Attempt,
			"progress_node_id": p.NodeID,
		}).Error
}

// DeleteImage removes an image record.
func (s *Store) DeleteImage(ctx context.Context, id string) error {
	res := s.db.WithContext(ctx).Delete(&Image{}, "id = ?", id)
	if res.Error != nil {
		return res.Error
	}
	if res.RowsAffected == 0 {
		return fmt.Errorf("image %q: %w", id, ErrNotFound)
	}
	return nil
}
