// Package gate admits work until it is closed, and waits for the work it
// admitted: what a graceful shutdown needs of sessions and publishes.
package gate

import (
	"context"
	"sync"
	"sync/atomic"
)

// Gate admits units of work until Close; once closed it admits none, and
// Wait returns when every admitted unit has left. The zero value is an
// open gate.
type Gate struct {
	// A unit joins active before it checks closed, and Close sets closed
	// before Wait reads active: a unit either sees the gate closed and
	// leaves again, or is counted by every Wait that follows Close.
	closed atomic.Bool
	active atomic.Int64
	// waiting counts the Waits in progress, so that Leave takes mu only
	// when one may need waking.
	waiting atomic.Int64

	// mu guards idle.
	mu sync.Mutex
	// idle is closed, and set to nil, when the last unit leaves while a
	// Wait is in progress.
	idle chan struct{}
}

// Enter admits one unit unless the gate is closed; an admitted unit calls
// Leave when it has finished.
func (g *Gate) Enter() bool {
	g.active.Add(1)
	if g.closed.Load() {
		g.Leave()
		return false
	}
	return true
}

// Leave ends a unit admitted by Enter.
func (g *Gate) Leave() {
	n := g.active.Add(-1)
	if n < 0 {
		panic("gate: Leave without Enter")
	}
	if n == 0 && g.waiting.Load() > 0 {
		g.mu.Lock()
		if g.idle != nil && g.active.Load() == 0 {
			close(g.idle)
			g.idle = nil
		}
		g.mu.Unlock()
	}
}

// Close stops admitting units. It is idempotent.
func (g *Gate) Close() { g.closed.Store(true) }

// Closed reports whether Close has been called.
func (g *Gate) Closed() bool { return g.closed.Load() }

// Wait waits until every admitted unit has left, and returns nil, or until
// ctx is done, and returns ctx.Err(). Called after Close, it returns nil
// only once no unit is left inside for good. When ctx ends first, Wait
// leaves nothing behind: no goroutine keeps waiting for the units.
func (g *Gate) Wait(ctx context.Context) error {
	g.mu.Lock()
	g.waiting.Add(1)
	defer g.waiting.Add(-1)
	if g.active.Load() == 0 {
		g.mu.Unlock()
		return nil
	}
	if g.idle == nil {
		g.idle = make(chan struct{})
	}
	idle := g.idle
	g.mu.Unlock()
	select {
	case <-idle:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
