package roomstore

import (
	"context"
	"database/sql"
	"fmt"

	"github.com/latticehq/lattice/storage"
)

// Lookup returns the indexed auth chains among events; events without an entry (message
// events, whose chains are derived from their auth events on demand) are left out instead of
// failing the call as AuthChain does.
func (c *Chains) Lookup(ctx context.Context, q storage.Querier, events []int64) (map[int64][]int64, error) {
	out := make(map[int64][]int64, len(events))
	var missing []int64
	c.mu.Lock()
	for _, e := range events {
		if ch, ok := c.cache[e]; ok {
			out[e] = ch
		} else {
			missing = append(missing, e)
		}
	}
	c.mu.Unlock()
	err := inBatches(ctx, q, `SELECT event_nid, chain FROM room_auth_chains WHERE event_nid IN `, intArgs(dedupe(missing)), func(rows *sql.Rows) error {
		var nid int64
		var blob []byte
		if err := rows.Scan(&nid, &blob); err != nil {
			return err
		}
		chain, err := decodeNIDs(blob)
		if err != nil {
			return fmt.Errorf("auth chain of %d: %w", nid, err)
		}
		out[nid] = chain
		c.put(nid, chain)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("look up auth chains: %w", err)
	}
	return out, nil
}

// Forget drops cached chains of events, for the writer of a transaction that rolled back: on
// SQLite a rolled-back event number is handed out again, to another event.
func (c *Chains) Forget(events ...int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, e := range events {
		if ch, ok := c.cache[e]; ok {
			delete(c.cache, e)
			c.size -= len(ch) + 1
		}
	}
}
