package store

import "context"

// ImageCounts returns how many images there are in each status, for metrics.
func (s *Store) ImageCounts(ctx context.Context) (map[string]int64, error) {
	return s.countBy(ctx, &Image{}, "status")
}

// NodeCounts returns how many nodes there are in each status, for metrics.
func (s *Store) NodeCounts(ctx context.Context) (map[string]int64, error) {
	return s.countBy(ctx, &Node{}, "status")
}

func (s *Store) countBy(ctx context.Context, model any, column string) (map[string]int64, error) {
	var rows []struct {
		Key   string
		Count int64
	}
	err := s.db.WithContext(ctx).Model(model).Select(column + " AS key, COUNT(*) AS count").Group(column).Scan(&rows).Error
	if err != nil {
		return nil, err
	}
	out := make(map[string]int64, len(rows))
	for _, r := range rows {
		out[r.Key] = r.Count
	}
	return out, nil
}

// ReadySignatureCounts returns how many READY images there are by what
// the signature of their checksum file said ("verified", "unsigned",
// "not_checked"; "" for images from before it was recorded), for metrics.
func (s *Store) ReadySignatureCounts(ctx context.Context) (map[string]int64, error) {
	var rows []struct {
		Key   string
		Count int64
	}
	err := s.db.WithContext(ctx).Model(&Image{}).Where("status = ?", StatusReady).
		Select("signature AS key, COUNT(*) AS count").Group("signature").Scan(&rows).Error
	if err != nil {
		return nil, err
	}
	out := make(map[string]int64, len(rows))
	for _, r := range rows {
		out[r.Key] = r.Count
	}
	return out, nil
}
