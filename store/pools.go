package store

import (
	"context"
	"errors"
	"fmt"

	"gorm.io/gorm"
)

// CreatePool adds a pool assigned to nodeIDs, which must exist.
// An id that is taken is ErrExists; an unknown node is ErrNotFound.
func (s *Store) CreatePool(ctx context.Context, p *Pool, nodeIDs []string) error {
	return s.db.WithContext(ctx).Transaction(func(tx *gorm.DB) error {
		for _, id := range nodeIDs {
			var count int64
			if err := tx.Model(&Node{}).Where("id = ?", id).Count(&count).Error; err != nil {
				return err
			}
			if count == 0 {
				return fmt.Errorf("node %q: %w", id, ErrNotFound)
			}
		}
		p.PoolNodes = nil
		if err := tx.Omit("PoolNodes").Create(p).Error; err != nil {
			if isDuplicate(err) {
				return fmt.Errorf("pool %q: %w", p.ID, ErrExists)
			}
			return err
		}
		for i, id := range nodeIDs {
			pn := PoolNode{PoolID: p.ID, NodeID: id, Position: i}
			if err := tx.Create(&pn).Error; err != nil {
				if isDuplicate(err) {
					continue // the same node listed twice
				}
				return err
			}
			p.PoolNodes = append(p.PoolNodes, pn)
		}
		return nil
	})
}

// Pool returns one pool with its node assignments.
func (s *Store) Pool(ctx context.Context, id string) (Pool, error) {
	var p Pool
	err := s.db.WithContext(ctx).Preload("PoolNodes", func(db *gorm.DB) *gorm.DB {
		return db.Order("position, node_id")
	}).First(&p, "id = ?", id).Error
	if errors.Is(err, gorm.ErrRecordNotFound) {
		return p, fmt.Errorf("pool %q: %w", id, ErrNotFound)
	}
	return p, err
}

// Pools lists all pools with their node assignments.
func (s *Store) Pools(ctx context.Context) ([]Pool, error) {
	var ps []Pool
	err := s.db.WithContext(ctx).Preload("PoolNodes", func(db *gorm.DB) *gorm.DB {
		return db.Order("position, node_id")
	}).Order("id").Find(&ps).Error
	return ps, err
}

// DeletePool removes a pool. While a live or READY image is in it, that is
// ErrInUse; failed and cancelled images go with the pool.
func (s *Store) DeletePool(ctx context.Context, id string) error {
	return s.db.WithContext(ctx).Transaction(func(tx *gorm.DB) error {
		var live int64
		if err := tx.Model(&Image{}).Where("pool_id = ? AND status IN ?", id, liveOrReady).Count(&live).Error; err != nil {
			return err
		}
		if live > 0 {
			return fmt.Errorf("pool %q holds %d image(s) that are downloading or READY: %w", id, live, ErrInUse)
		}
		if err := tx.Where("pool_id = ?", id).Delete(&Image{}).Error; err != nil {
			return err
		}
		if err := tx.Where("pool_id = ?", id).Delete(&PoolNode{}).Error; err != nil {
			return err
		}
		res := tx.Delete(&Pool{}, "id = ?", id)
		if res.Error != nil {
			if isForeignKey(res.Error) {
				return fmt.Errorf("pool %q: %w", id, ErrInUse)
			}
			return res.Error
		}
		if res.RowsAffected == 0 {
			return fmt.Errorf("pool %q: %w", id, ErrNotFound)
		}
		return nil
	})
}

// NodesForPool returns the nodes assigned to the pool, in assignment order,
// followed by any other node whose agent reports serving it.
func (s *Store) NodesForPool(ctx context.Context, poolID string) ([]Node, error) {
	p, err := s.Pool(ctx, poolID)
	if err != nil {
		return nil, err
	}
	all, err := s.Nodes(ctx)
	if err != nil {
		return nil, err
	}
	byID := make(map[string]Node, len(all))
	for _, n := range all {
		byID[n.ID] = n
	}
	var out []Node
	seen := map[string]bool{}
	for _, id := range p.NodeIDs() {
		if n, ok := byID[id]; ok {
			out = append(out, n)
			seen[id] = true
		}
	}
	for _, n := range all {
		if seen[n.ID] {
			continue
		}
		for _, pid := range n.Pools {
			if pid == poolID {
				out = append(out, n)
				break
			}
		}
	}
	return out, nil
}
