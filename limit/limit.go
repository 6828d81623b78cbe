// Package limit bounds what one client address may do: how many new
// connections per second (a token bucket from golang.org/x/time/rate), how
// many at once, and (Failures) how many failed authentications before it
// is refused for a growing while. Addresses are grouped as attackers hold them: an IPv4
// address alone, an IPv6 address by its /64 prefix. The invalid address,
// a client whose address is unknown (for example an X-Forwarded-For or
// Forwarded hop that a trusted proxy could not name), is one group of its
// own: every unknown client shares its allowance, so that not being known
// is no way around a limit.
package limit

import (
	"math"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tidings-io/tidings/broker"
	"github.com/tidings-io/tidings/internal/defaults"
	"golang.org/x/time/rate"
)

// Errors of Acquire; both come as a *Refusal. They are
// broker.ErrRateLimited errors: their text is for the client.
var (
	// ErrRate: the address opens connections faster than Config.Rate.
	ErrRate = broker.NewError(broker.ErrRateLimited, "too many new connections from this address")
	// ErrConcurrent: the address holds Config.Max connections already.
	ErrConcurrent = broker.NewError(broker.ErrRateLimited, "too many connections from this address")
)

// Refusal is a refused Acquire: which limit, and when to try again.
type Refusal struct {
	// Err is ErrRate or ErrConcurrent.
	Err *broker.Error
	// RetryAfter is when a new attempt may succeed (at least one second).
	RetryAfter time.Duration
}

func (r *Refusal) Error() string { return r.Err.Error() }
func (r *Refusal) Unwrap() error { return r.Err }

// Config sets the limits per address. A zero or negative field disables
// its limit.
type Config struct {
	// Rate is the sustained number of new connections per second.
	Rate float64
	// Burst is how many new connections may come at once above Rate.
	// Default (when Rate is set): Rate rounded up, at least 1.
	Burst int
	// Max is the most connections an address may hold at once.
	Max int
	// Now returns the current time. Default time.Now.
	Now func() time.Time
}

// sweepEvery is how often idle entries are dropped.
const sweepEvery = time.Minute

// PerAddr applies a Config to each client address.
type PerAddr struct {
	cfg Config

	// mu guards entries and lastSweep.
	mu        sync.Mutex
	entries   map[netip.Prefix]*entry
	lastSweep time.Time

	crowded atomic.Bool // FirstCrowd has reported true
}

// entry is one address group's state.
type entry struct {
	bucket *rate.Limiter // nil when Rate is off
	active int
}

// New returns a limiter applying cfg to each address.
func New(cfg Config) *PerAddr {
	cfg = defaults.Fill(cfg, Config{Now: time.Now})
	if cfg.Rate > 0 && cfg.Burst <= 0 {
		cfg.Burst = max(1, int(math.Ceil(cfg.Rate)))
	}
	return &PerAddr{cfg: cfg, entries: make(map[netip.Prefix]*entry)}
}

// Group is the key an address is counted under: IPv4 addresses alone,
// IPv6 addresses by /64, and every invalid (unknown) address under the
// zero Prefix.
func Group(a netip.Addr) netip.Prefix {
	if !a.IsValid() {
		return netip.Prefix{}
	}
	a = a.Unmap()
	if a.Is4() {
		return netip.PrefixFrom(a, 32)
	}
	p, _ := a.WithZone("").Prefix(64)
	return p
}

// Acquire admits one new connection from a, or refuses it with a
// *Refusal. On success the caller must call release exactly once when the
// connection ends. Every invalid (unknown) address is counted in one
// group.
func (l *PerAddr) Acquire(a netip.Addr) (release func(), err error) {
	release, _, err = l.AcquireActive(a)
	return release, err
}

// AcquireActive is Acquire that also tells, on success, how many
// connections a's group holds with this one: the count the limits use,
// read under the same lock, for a caller that wants to notice crowded
// addresses. It is 0 when Config sets neither Rate nor Max: nothing is
// counted then.
func (l *PerAddr) AcquireActive(a netip.Addr) (release func(), active int, err error) {
	if l.cfg.Rate <= 0 && l.cfg.Max <= 0 {
		return func() {}, 0, nil
	}
	key := Group(a)
	now := l.cfg.Now()
	l.mu.Lock()
	defer l.mu.Unlock()
	l.sweep(now)
	e := l.entries[key]
	if e == nil {
		e = &entry{}
		if l.cfg.Rate > 0 {
			e.bucket = rate.NewLimiter(rate.Limit(l.cfg.Rate), l.cfg.Burst)
		}
		l.entries[key] = e
	}
	if l.cfg.Max > 0 && e.active >= l.cfg.Max {
		return nil, 0, &Refusal{Err: ErrConcurrent, RetryAfter: time.Second}
	}
	if e.bucket != nil && !e.bucket.AllowN(now, 1) {
		wait := time.Duration((1 - e.bucket.TokensAt(now)) / l.cfg.Rate * float64(time.Second))
		return nil, 0, &Refusal{Err: ErrRate, RetryAfter: max(time.Second, wait.Round(time.Second))}
	}
	e.active++
	var once sync.Once
	return func() {
		once.Do(func() {
			l.mu.Lock()
			e.active--
			l.mu.Unlock()
		})
	}, e.active, nil
}

// FirstCrowd reports whether active, a count AcquireActive returned, is
// over crowd for the first time in l's life: it is true once, for the
// first connection that takes a group over crowd, and false after, so
// that a caller warns once of an address that holds many connections
// (the sign, say, of a proxy in front that is not trusted). It costs a
// comparison, and an atomic load once the crowd has been seen. A caller
// with conditions of its own checks them first.
func (l *PerAddr) FirstCrowd(active, crowd int) bool {
	return active > crowd && !l.crowded.Load() && l.crowded.CompareAndSwap(false, true)
}

// Len returns the number of address groups tracked.
func (l *PerAddr) Len() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.entries)
}

// sweep drops, at most every sweepEvery, the groups that hold no
// connection and whose bucket is full again: forgetting them changes
// nothing. The caller holds mu.
func (l *PerAddr) sweep(now time.Time) {
	if now.Sub(l.lastSweep) < sweepEvery {
		return
	}
	l.lastSweep = now
	for k, e := range l.entries {
		if e.active == 0 && (e.bucket == nil || e.bucket.TokensAt(now) >= float64(l.cfg.Burst)) {
			delete(l.entries, k)
		}
	}
}
