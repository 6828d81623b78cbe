package hooks_test

import (
	"context"
	"errors"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tidings-io/tidings/broker"
	"github.com/tidings-io/tidings/hooks"
)

// gauge counts the requests a backend has open, and the most it had.
type gauge struct {
	now, max atomic.Int64
}

func (g *gauge) enter() {
	n := g.now.Add(1)
	for {
		m := g.max.Load()
		if n <= m || g.max.CompareAndSwap(m, n) {
			return
		}
	}
}

func (g *gauge) leave() { g.now.Add(-1) }

const (
	concurrentCalls = 1000
	maxConcurrent   = 8
)

// TestConcurrencyBound: 1000 calls at once against a slow backend never
// have more than MaxConcurrent requests open at the backend, and all of
// them return, allowed.
func TestConcurrencyBound(t *testing.T) {
	t.Parallel()
	var g gauge
	b := newBackend(t, func(w http.ResponseWriter, r *http.Request) {
		g.enter()
		defer g.leave()
		time.Sleep(2 * time.Millisecond) // the backend's work
		allow(w, r)
	})
	cfg := allHooks(b)
	cfg.MaxConcurrent = maxConcurrent
	cfg.Timeout = time.Minute
	h := newHooks(t, cfg)
	var wg sync.WaitGroup
	var failed atomic.Int64
	for i := range concurrentCalls {
		kind := []hooks.Kind{hooks.Connect, hooks.Subscribe, hooks.Publish, hooks.Refresh}[i%4]
		wg.Go(func() {
			if _, err := h.Call(t.Context(), kind, hooks.Request{Session: "s"}); err != nil {
				failed.Add(1)
				t.Errorf("Call: %v", err)
			}
		})
	}
	wg.Wait()
	if n := b.requests.Load(); n != concurrentCalls {
		t.Errorf("the backend got %d requests, want %d", n, concurrentCalls)
	}
	if m := g.max.Load(); m > maxConcurrent {
		t.Errorf("%d requests open at once at the backend, want at most %d", m, maxConcurrent)
	} else {
		t.Logf("at most %d requests open at once (bound %d)", m, maxConcurrent)
	}
}

// TestOverload: 1000 calls at once against a backend that does not
// answer, all with the same deadline: the ones that got a slot time out,
// the others fail as overloaded when the deadline passes; every call
// returns about then, and never more than MaxConcurrent requests were
// open at the backend.
func TestOverload(t *testing.T) {
	t.Parallel()
	var g gauge
	release := make(chan struct{})
	b := newBackend(t, func(_ http.ResponseWriter, r *http.Request) {
		g.enter()
		defer g.leave()
		select {
		case <-r.Context().Done():
		case <-release:
		}
	})
	t.Cleanup(func() { close(release) })
	cfg := allHooks(b)
	cfg.MaxConcurrent = maxConcurrent
	cfg.Timeout = time.Minute
	h := newHooks(t, cfg)

	const deadline = 500 * time.Millisecond
	ctx, cancel := context.WithTimeout(t.Context(), deadline)
	defer cancel()
	start := time.Now()
	var wg sync.WaitGroup
	var timeouts, overloads, others atomic.Int64
	for range concurrentCalls {
		wg.Go(func() {
			_, err := h.Call(ctx, hooks.Subscribe, hooks.Request{Session: "s"})
			switch {
			case errors.Is(err, hooks.ErrTimeout):
				timeouts.Add(1)
			case errors.Is(err, hooks.ErrOverload):
				overloads.Add(1)
			default:
				others.Add(1)
				t.Errorf("Call = %v, want a timeout or an overload", err)
			}
			wantUnavailable(t, err, broker.ErrUnavailable)
		})
	}
	wg.Wait()
	took := time.Since(start)
	if took > deadline+slack {
		t.Errorf("the calls took %v, want about %v", took, deadline)
	}
	if m := g.max.Load(); m > maxConcurrent {
		t.Errorf("%d requests open at once at the backend, want at most %d", m, maxConcurrent)
	}
	if timeouts.Load() > maxConcurrent || overloads.Load() < concurrentCalls-maxConcurrent {
		t.Errorf("%d timeouts and %d overloads, want at most %d and at least %d", timeouts.Load(), overloads.Load(),
			maxConcurrent, concurrentCalls-maxConcurrent)
	}
	t.Logf("%d timeouts, %d overloads in %v; at most %d requests open at the backend", timeouts.Load(), overloads.Load(), took, g.max.Load())
}

// TestOverloadWithinTimeout: with each call bounded by Config.Timeout
// alone, calls that wait past it fail as overloaded, and every call
// returns within about Timeout.
func TestOverloadWithinTimeout(t *testing.T) {
	t.Parallel()
	b := stalling(t)
	cfg := allHooks(b)
	cfg.MaxConcurrent = maxConcurrent
	cfg.Timeout = 300 * time.Millisecond
	h := newHooks(t, cfg)
	var wg sync.WaitGroup
	var overloads atomic.Int64
	for range concurrentCalls {
		wg.Go(func() {
			start := time.Now()
			_, err := h.Call(t.Context(), hooks.Connect, hooks.Request{})
			if took := time.Since(start); took > cfg.Timeout+slack {
				t.Errorf("a call took %v, want about %v", took, cfg.Timeout)
			}
			if !errors.Is(err, hooks.ErrTimeout) && !errors.Is(err, hooks.ErrOverload) {
				t.Errorf("Call = %v, want a timeout or an overload", err)
			}
			if errors.Is(err, hooks.ErrOverload) {
				overloads.Add(1)
			}
		})
	}
	wg.Wait()
	if overloads.Load() < concurrentCalls/2 {
		t.Errorf("%d overloads, want most of the %d calls", overloads.Load(), concurrentCalls)
	}
}
