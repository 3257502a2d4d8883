package store

import (
	"context"
	"errors"
	"fmt"
	"time"

	"gorm.io/gorm"

	"github.com/quantix/cloudimages/imagestate"
)

var liveOrReady = []string{StatusPending, StatusDownloading, StatusVerifying, StatusConverting, StatusReady}

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

	// After continues a listing after the image it names (the last one of
	// the previous page); nil starts at the newest.
	After *ImageCursor
	// Limit is the most images returned; 0 returns them all.
	Limit int
}

// ImageCursor is a place in the listing's order (newest first, then by
// id): the creation time and id of the image before it.
type ImageCursor struct {
	CreatedAt time.Time
	ID        string
}

// CursorOf is the cursor that continues a listing after img.
func CursorOf(img Image) ImageCursor { return ImageCursor{CreatedAt: img.CreatedAt, ID: img.ID} }

// Images lists images, newest first and, among those created at the same
// moment, by id: an order that does not change while images are added or
// removed, so that paging through it with After never shows one twice.
func (s *Store) Images(ctx context.Context, f ImageFilter) ([]Image, error) {
	q := s.db.WithContext(ctx).Order("created_at DESC, id")
	if f.PoolID != "" {
		q = q.Where("pool_id = ?", f.PoolID)
	}
	if f.Status != "" {
		q = q.Where("status = ?", f.Status)
	}
	if f.Live {
		q = q.Where("status IN ?", live)
	}
	if f.After != nil {
		at := f.After.CreatedAt.UTC()
		q = q.Where("created_at < ? OR (created_at = ? AND id > ?)", at, at, f.After.ID)
	}
	if f.Limit > 0 {
		q = q.Limit(f.Limit)
	}
	var imgs []Image
	err := q.Find(&imgs).Error
	return imgs, err
}

// Progress is the live progress of a download.
type Progress struct {
	BytesDone      int64
	BytesTotal     int64
	BytesPerSecond float64
	Attempt        int
	NodeID         string
	Mirrors        []imagestate.MirrorBytes // nil leaves the recorded ones
}

// UpdateProgress records progress of an image that is still live; for a
// terminal image it does nothing.
func (s *Store) UpdateProgress(ctx context.Context, id string, p Progress) error {
	cols := map[string]any{
		"bytes_done":       p.BytesDone,
		"bytes_total":      p.BytesTotal,
		"bytes_per_second": p.BytesPerSecond,
		"attempt":          p.Attempt,
		"progress_node_id": p.NodeID,
	}
	if p.Mirrors != nil {
		cols["mirror_bytes"] = MirrorBytes(p.Mirrors)
	}
	return s.db.WithContext(ctx).Model(&Image{}).
		Where("id = ? AND status IN ?", id, live).
		Updates(cols).Error
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
