package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
)

// SetNodeTags implements Store. A tagged node's key does not expire
// (as for a node that joined with a tagged key), so the expiry is cleared.
func (s *SQLite) SetNodeTags(ctx context.Context, id int64, tags []string) (Node, error) {
	if len(tags) == 0 {
		return Node{}, errors.New("set node tags: no tags given")
	}
	var out Node
	err := s.tx(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `UPDATE nodes SET tags = ?, key_expiry = 0, key_revoked = 0 WHERE id = ?`, mustJSON(tags), id)
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return fmt.Errorf("node %d: %w", id, ErrNotFound)
		}
		out, err = nodeWhere(ctx, tx, `id = ?`, id)
		return err
	})
	if err != nil {
		return out, fmt.Errorf("set tags of node %d: %w", id, err)
	}
	return out, nil
}
