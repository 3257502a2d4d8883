package store

import (
	"context"
	"errors"
	"fmt"
	"time"

	"gorm.io/gorm"
)

// CreateNode adds a node; an id that is taken is ErrExists.
func (s *Store) CreateNode(ctx context.Context, n *Node) error {
	if n.Status == "" {
		n.Status = NodeUnknown
	}
	err := s.db.WithContext(ctx).Create(n).Error
	if isDuplicate(err) {
		return fmt.Errorf("node %q: %w", n.ID, ErrExists)
	}
	return err
}

// Node returns one node.
func (s *Store) Node(ctx context.Context, id string) (Node, error) {
	var n Node
	err := s.db.WithContext(ctx).First(&n, "id = ?", id).Error
	if errors.Is(err, gorm.ErrRecordNotFound) {
		return n, fmt.Errorf("node %q: %w", id, ErrNotFound)
	}
	return n, err
}

// Nodes lists all nodes by id.
func (s *Store) Nodes(ctx context.Context) ([]Node, error) {
	var ns []Node
	err := s.db.WithContext(ctx).Order("id").Find(&ns).Error
	return ns, err
}

// DeleteNode removes a node and its pool assignments.
func (s *Store) DeleteNode(ctx context.Context, id string) error {
	return s.db.WithContext(ctx).Transaction(func(tx *gorm.DB) error {
		if err := tx.Where("node_id = ?", id).Delete(&PoolNode{}).Error; err != nil {
			return err
		}
		res := tx.Delete(&Node{}, "id = ?", id)
		if res.Error != nil {
			return res.Error
		}
		if res.RowsAffected == 0 {
			return fmt.Errorf("node %q: %w", id, ErrNotFound)
		}
		return nil
	})
}

// NodeHealth is what a health check of a node's agent found.
type NodeHealth struct {
	Online          bool
	Pools           []string
	Space           PoolSpace // free and total bytes by pool id
	ActiveDownloads int
	At              time.Time
}

// RecordNodeHealth stores the result of a health check. An offline node
// keeps the pools and last_seen_at of its last good check.
func (s *Store) RecordNodeHealth(ctx context.Context, id string, h NodeHealth) error {
	fields := map[string]any{"status": NodeOffline}
	if h.Online {
		fields = map[string]any{
			"status":           NodeOnline,
			"pools":            StringList(h.Pools),
			"pool_space":       h.Space,
			"active_downloads": h.ActiveDownloads,
			"last_seen_at":     h.At.UTC(),
		}
	}
	res := s.db.WithContext(ctx).Model(&Node{}).Where("id = ?", id).Updates(fields)
	if res.Error != nil {
		return res.Error
	}
	if res.RowsAffected == 0 {
		return fmt.Errorf("node %q: %w", id, ErrNotFound)
	}
	return nil
}
