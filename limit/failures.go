package limit

import (
	"container/list"
	"net/netip"
	"sync"
	"time"

	"github.com/tidings-io/tidings/internal/defaults"
)

// FailureConfig sets how failed authentications of one address are
// throttled. The zero value of each field means its default.
type FailureConfig struct {
	// Max is how many failures an address may have within Window before
	// it is blocked. Default 20.
	Max int
	// Window is the period over which failures are counted: a count that
	// does not reach Max within Window of its first failure starts again.
	// Default 1 minute.
	Window time.Duration
	// Backoff is how long an address is blocked the first time; each
	// further block lasts twice as long as the one before, up to
	// MaxBackoff. Default 5 seconds.
	Backoff time.Duration
	// MaxBackoff bounds one block. An address with no failure for
	// MaxBackoff after its last block ends is forgotten, and starts again
	// from Backoff. Default 10 minutes.
	MaxBackoff time.Duration
	// MaxAddrs bounds the address groups remembered; beyond it the one
	// whose last failure is oldest is forgotten. Default 10000.
	MaxAddrs int
	// Now returns the current time. Default time.Now.
	Now func() time.Time
}

// failureDefaults is the default of each FailureConfig field that has one.
var failureDefaults = FailureConfig{
	Max:      20,
	Window:   time.Minute,
	Backoff:  5 * time.Second,
	MaxAddrs: 10000,
	Now:      time.Now,
}

func (c FailureConfig) withDefaults() FailureConfig {
	c = defaults.Fill(c, failureDefaults)
	if c.MaxBackoff < c.Backoff {
		c.MaxBackoff = max(c.Backoff, 10*time.Minute)
	}
	return c
}

// Failures throttles failed authentications per address group (see
// Group; every unknown address is one group): after Max failures within
// Window the group is blocked for Backoff, then twice as long at each new
// block, up to MaxBackoff. While blocked, every attempt of the group is
// to be refused, right or wrong, so that a guesser learns nothing. Only
// groups with failures are remembered, at most MaxAddrs of them. It is
// safe for concurrent use.
type Failures struct {
	cfg FailureConfig

	// mu guards byGroup, order and the records in them.
	mu      sync.RWMutex
	byGroup map[netip.Prefix]*list.Element // of *failure
	order   *list.List                     // of *failure, by last failure, oldest at the front
}

// failure is one group's record.
type failure struct {
	group  netip.Prefix
	count  int       // failures since start
	start  time.Time // the first failure counted in count
	last   time.Time // the last failure
	blocks int       // blocks so far
	until  time.Time // end of the current or last block
}

// NewFailures returns a throttle applying cfg.
func NewFailures(cfg FailureConfig) *Failures {
	return &Failures{cfg: cfg.withDefaults(), byGroup: make(map[netip.Prefix]*list.Element), order: list.New()}
}

// Blocked reports whether a is blocked now, and for how much longer.
func (f *Failures) Blocked(a netip.Addr) (retryAfter time.Duration, blocked bool) {
	now := f.cfg.Now()
	f.mu.RLock()
	defer f.mu.RUnlock()
	el := f.byGroup[Group(a)]
	if el == nil {
		return 0, false
	}
	if r := el.Value.(*failure); now.Before(r.until) {
		return r.until.Sub(now), true
	}
	return 0, false
}

// Fail counts a failed authentication from a. When it blocks the group
// it returns how long the block lasts.
func (f *Failures) Fail(a netip.Addr) (retryAfter time.Duration, blocked bool) {
	now := f.cfg.Now()
	key := Group(a)
	f.mu.Lock()
	defer f.mu.Unlock()
	el := f.byGroup[key]
	if el != nil && f.forgotten(el.Value.(*failure), now) {
		f.remove(el)
		el = nil
	}
	if el == nil {
		// Drop the records already forgotten at the old end, then, if
		// still full, the oldest.
		for front := f.order.Front(); front != nil && f.forgotten(front.Value.(*failure), now); front = f.order.Front() {
			f.remove(front)
		}
		for f.order.Len() >= f.cfg.MaxAddrs {
			f.remove(f.order.Front())
		}
		el = f.order.PushBack(&failure{group: key})
		f.byGroup[key] = el
	} else {
		f.order.MoveToBack(el)
	}
	r := el.Value.(*failure)
	r.last = now
	if now.Before(r.until) {
		return r.until.Sub(now), true // already blocked
	}
	if r.count == 0 || now.Sub(r.start) >= f.cfg.Window {
		r.count, r.start = 0, now
	}
	r.count++
	if r.count < f.cfg.Max {
		return 0, false
	}
	d := f.cfg.Backoff
	for i := 0; i < r.blocks && d < f.cfg.MaxBackoff; i++ {
		d *= 2
	}
	d = min(d, f.cfg.MaxBackoff)
	r.blocks++
	r.count = 0
	r.until = now.Add(d)
	return d, true
}

// Len returns the number of address groups remembered.
func (f *Failures) Len() int {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return f.order.Len()
}

// forgotten reports whether r may be dropped: its last block ended
// MaxBackoff ago and its last failure is older than Window.
func (f *Failures) forgotten(r *failure, now time.Time) bool {
	return !now.Before(r.until.Add(f.cfg.MaxBackoff)) && now.Sub(r.last) >= f.cfg.Window
}

// remove drops el's record. The caller holds mu.
func (f *Failures) remove(el *list.Element) {
	delete(f.byGroup, el.Value.(*failure).group)
	f.order.Remove(el)
}
