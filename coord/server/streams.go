package server

import (
	"context"
	"sync"
)

// streamSet caps open netmap streams in total and per node. A node's new
// stream ends its oldest past the per-node cap: a reconnecting agent
// whose old TCP connection is not yet known dead must get in, and one
// machine cannot hold more than its share.
type streamSet struct {
	max, perNode int

	mu     sync.Mutex
	total  int
	byNode map[int64][]*streamSlot // oldest first
}

type streamSlot struct {
	cancel context.CancelFunc
}

func newStreamSet(max, perNode int) *streamSet {
	return &streamSet{max: max, perNode: perNode, byNode: make(map[int64][]*streamSlot)}
}

// open registers a stream of node id; it returns a context that ends when
// the stream is replaced, and a release func, or ok=false when the total
// cap is reached.
func (ss *streamSet) open(ctx context.Context, id int64) (context.Context, func(), bool) {
	ctx, cancel := context.WithCancel(ctx)
	slot := &streamSlot{cancel: cancel}
	ss.mu.Lock()
	mine := ss.byNode[id]
	var evict []*streamSlot
	for len(mine) >= ss.perNode {
		evict = append(evict, mine[0])
		mine = mine[1:]
	}
	if len(evict) == 0 && ss.total >= ss.max {
		ss.mu.Unlock()
		cancel()
		return nil, nil, false
	}
	ss.total -= len(evict)
	ss.total++
	ss.byNode[id] = append(mine, slot)
	ss.mu.Unlock()
	for _, e := range evict {
		e.cancel()
	}
	var once sync.Once
	return ctx, func() {
		once.Do(func() {
			cancel()
			ss.mu.Lock()
			defer ss.mu.Unlock()
			list := ss.byNode[id]
			for i, e := range list {
				if e == slot {
					ss.byNode[id] = append(list[:i:i], list[i+1:]...)
					ss.total--
					break
				}
			}
			if len(ss.byNode[id]) == 0 {
				delete(ss.byNode, id)
			}
		})
	}, true
}

func (ss *streamSet) count() int {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	return ss.total
}
