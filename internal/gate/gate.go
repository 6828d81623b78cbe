// Package gate admits work until it is closed, and waits for the work it
// admitted: what a graceful shutdown needs of sessions and publishes.
package gate

import (
	"context"
	"sync"
)

// Gate admits units of work until Close; once closed it admits none, and
// Wait returns when every admitted unit has left. The zero value is an
// open gate.
type Gate struct {
	// mu is held shared while a unit checks closed and joins active, and
	// exclusively by Close, so that none joins once closed is set.
	mu     sync.RWMutex
	closed bool
	active sync.WaitGroup
}

// Enter admits one unit unless the gate is closed; an admitted unit calls
// Leave when it has finished.
func (g *Gate) Enter() bool {
	g.mu.RLock()
	defer g.mu.RUnlock()
	if g.closed {
		return false
	}
	g.active.Add(1)
	return true
}

// Leave ends a unit admitted by Enter.
func (g *Gate) Leave() { g.active.Done() }

// Close stops admitting units. It is idempotent.
func (g *Gate) Close() {
	g.mu.Lock()
	g.closed = true
	g.mu.Unlock()
}

// Closed reports whether Close has been called.
func (g *Gate) Closed() bool {
	g.mu.RLock()
	defer g.mu.RUnlock()
	return g.closed
}

// Wait waits until every admitted unit has left, or until ctx is done,
// then returns ctx.Err().
func (g *Gate) Wait(ctx context.Context) error {
	done := make(chan struct{})
	go func() {
		g.active.Wait()
		close(done)
	}()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
