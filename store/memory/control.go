package memory

import (
	"container/heap"
	"context"
	"errors"
	"slices"
	"sync"
	"time"

	"github.com/tidings-io/tidings/control"
)

// The memory store is also the control.Backend of a single node: its
// broadcasts reach this node only, and presence, revocations and node
// announcements live in process, each expiring on the store's clock
// (Config.Now). Nothing of it runs in the background: broadcasts are
// handed to the handler by the caller of Broadcast that finds no delivery
// under way, and expired records are dropped by the calls that meet them
// (a topic's presence in expiry order, from a heap) and by a pass over
// every topic at most once per presenceSweepEvery.

var _ control.Backend = (*Store)(nil)

// errPresenceTTL is returned by UpdatePresence for entries to add with no
// positive TTL, a defect of the caller.
var errPresenceTTL = errors.New("memory: presence update adds entries with no positive TTL")

// errAnnounceTTL is returned by Announce for a ttl that is not positive.
var errAnnounceTTL = errors.New("memory: announcement with no positive TTL")

// errRevocation is returned by Revoke for a revocation that does not name
// exactly one of a user and a token id.
var errRevocation = errors.New("memory: a revocation names exactly one of a user and a token id")

// presenceSweepEvery is how often, at most, UpdatePresence looks at every
// topic to drop the entries that expired where nobody reads, so that
// abandoned topics hold no memory.
const presenceSweepEvery = time.Minute

// controlState is a Store's control plane.
type controlState struct {
	now func() time.Time

	// busMu guards handler, queue and draining.
	busMu    sync.Mutex
	handler  func(msg []byte)
	queue    [][]byte
	draining bool // a Broadcast call is handing queue to handler

	// mu guards everything below.
	mu        sync.Mutex
	topics    map[string]*presenceTopic
	nextSweep time.Time
	revoked   map[string]control.Revocation // "user:<U>" or "jti:<J>" → revocation
	nodes     map[string]announced          // by node id
}

// announced is a node's last announcement.
type announced struct {
	info    control.NodeInfo
	expires time.Time
}

// presenceTopic is one topic's presence: its entries by session, the
// number of live entries per non-empty user, and the entries by expiry.
type presenceTopic struct {
	entries  map[string]*presenceItem
	users    map[string]int
	byExpiry presenceHeap
}

// presenceItem is one entry and when it expires.
type presenceItem struct {
	entry   control.PresenceEntry
	expires time.Time
	index   int // in byExpiry
}

// presenceHeap orders a topic's entries by expiry, soonest first.
type presenceHeap []*presenceItem

func (h presenceHeap) Len() int           { return len(h) }
func (h presenceHeap) Less(i, j int) bool { return h[i].expires.Before(h[j].expires) }
func (h presenceHeap) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].index, h[j].index = i, j
}
func (h *presenceHeap) Push(x any) {
	it := x.(*presenceItem)
	it.index = len(*h)
	*h = append(*h, it)
}
func (h *presenceHeap) Pop() any {
	old := *h
	it := old[len(old)-1]
	old[len(old)-1] = nil
	*h = old[:len(old)-1]
	return it
}

// newControlState returns an empty control plane on the clock now.
func newControlState(now func() time.Time) *controlState {
	return &controlState{
		now:     now,
		topics:  make(map[string]*presenceTopic),
		revoked: make(map[string]control.Revocation),
		nodes:   make(map[string]announced),
	}
}

// controlPlane returns s's control state.
func (s *Store) controlPlane() *controlState { return s.ctl }

// controlReady returns ctx's error, or ErrClosed once the store is closed.
func (s *Store) controlReady(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	s.mu.RLock()
	closed := s.closed
	s.mu.RUnlock()
	if closed {
		return ErrClosed
	}
	return nil
}

// locked runs f on the control state under its lock, with the store
// clock's time, once ctx and the store allow it: it returns ctx's error or
// ErrClosed without running f.
func (s *Store) locked(ctx context.Context, f func(c *controlState, now time.Time) error) error {
	if err := s.controlReady(ctx); err != nil {
		return err
	}
	c := s.controlPlane()
	now := c.now()
	c.mu.Lock()
	defer c.mu.Unlock()
	return f(c, now)
}

// lockedRead returns what read finds in the control state, run as locked
// runs it.
func lockedRead[T any](ctx context.Context, s *Store, read func(c *controlState, now time.Time) T) (T, error) {
	var out T
	err := s.locked(ctx, func(c *controlState, now time.Time) error {
		out = read(c, now)
		return nil
	})
	return out, err
}

// Broadcast hands msg to this node's OnBroadcast handler, the only node
// of a memory store, after the messages broadcast before it. It returns
// once msg is delivered, unless a delivery is under way (another
// Broadcast's, or the handler calling Broadcast): then that delivery
// hands it over after the messages before it, and Broadcast returns at
// once. With no handler set, msg is dropped.
func (s *Store) Broadcast(ctx context.Context, msg []byte) error {
	if err := s.controlReady(ctx); err != nil {
		return err
	}
	c := s.controlPlane()
	c.busMu.Lock()
	if c.handler == nil {
		c.busMu.Unlock()
		return nil
	}
	c.queue = append(c.queue, slices.Clone(msg))
	if c.draining {
		c.busMu.Unlock()
		return nil
	}
	c.draining = true
	for {
		if len(c.queue) == 0 {
			c.draining = false
			c.queue = nil
			c.busMu.Unlock()
			return nil
		}
		next, handler := c.queue[0], c.handler
		c.queue[0] = nil
		c.queue = c.queue[1:]
		c.busMu.Unlock()
		c.deliver(handler, next)
		c.busMu.Lock()
	}
}

// deliver calls handler with msg; should it panic, the next Broadcast
// delivers what was queued behind msg.
func (c *controlState) deliver(handler func([]byte), msg []byte) {
	ok := false
	defer func() {
		if !ok {
			c.busMu.Lock()
			c.draining = false
			c.busMu.Unlock()
		}
	}()
	handler(msg)
	ok = true
}

// OnBroadcast sets the function that receives every broadcast message.
func (s *Store) OnBroadcast(handler func(msg []byte)) {
	c := s.controlPlane()
	c.busMu.Lock()
	c.handler = handler
	c.busMu.Unlock()
}

// UpdatePresence applies u: an added entry that is live already gets the
// new expiry (and the new fields); a removed one that is absent is
// ignored.
func (s *Store) UpdatePresence(ctx context.Context, u control.PresenceUpdate) error {
	return s.locked(ctx, func(c *controlState, now time.Time) error {
		if len(u.Add) > 0 && u.TTL <= 0 {
			return errPresenceTTL
		}
		c.updatePresence(u, now)
		return nil
	})
}

// updatePresence applies u at now. The caller holds mu.
func (c *controlState) updatePresence(u control.PresenceUpdate, now time.Time) {
	expires := now.Add(u.TTL)
	if !now.Before(c.nextSweep) {
		c.sweepPresence(now)
	}
	for _, e := range u.Add {
		t := c.topics[e.Topic]
		if t == nil {
			t = &presenceTopic{entries: make(map[string]*presenceItem), users: make(map[string]int)}
			c.topics[e.Topic] = t
		}
		t.purge(now)
		e.Info = slices.Clone(e.Info)
		if it := t.entries[e.Session]; it != nil {
			if it.entry.User != e.User {
				t.dropUser(it.entry.User)
				t.addUser(e.User)
			}
			it.entry, it.expires = e, expires
			heap.Fix(&t.byExpiry, it.index)
			continue
		}
		it := &presenceItem{entry: e, expires: expires}
		t.entries[e.Session] = it
		heap.Push(&t.byExpiry, it)
		t.addUser(e.User)
	}
	for _, k := range u.Remove {
		t := c.topics[k.Topic]
		if t == nil {
			continue
		}
		if it := t.entries[k.Session]; it != nil {
			heap.Remove(&t.byExpiry, it.index)
			t.forget(it)
		}
		t.purge(now)
		if len(t.entries) == 0 {
			delete(c.topics, k.Topic)
		}
	}
}

// Presence lists topic's live entries.
func (s *Store) Presence(ctx context.Context, topic string) ([]control.PresenceEntry, error) {
	return lockedRead(ctx, s, func(c *controlState, now time.Time) []control.PresenceEntry {
		t := c.liveTopic(topic, now)
		if t == nil {
			return nil
		}
		out := make([]control.PresenceEntry, 0, len(t.entries))
		for _, it := range t.entries {
			e := it.entry
			e.Info = slices.Clone(e.Info)
			out = append(out, e)
		}
		return out
	})
}

// PresenceStats counts topic's live entries and their distinct non-empty
// users; it drops the entries that expired since the last call, and is
// otherwise O(1).
func (s *Store) PresenceStats(ctx context.Context, topic string) (control.PresenceStats, error) {
	return lockedRead(ctx, s, func(c *controlState, now time.Time) control.PresenceStats {
		t := c.liveTopic(topic, now)
		if t == nil {
			return control.PresenceStats{}
		}
		return control.PresenceStats{Sessions: len(t.entries), Users: len(t.users)}
	})
}

// liveTopic returns topic's presence with its expired entries dropped, or
// nil when it has none left. The caller holds mu.
func (c *controlState) liveTopic(topic string, now time.Time) *presenceTopic {
	t := c.topics[topic]
	if t == nil {
		return nil
	}
	t.purge(now)
	if len(t.entries) == 0 {
		delete(c.topics, topic)
		return nil
	}
	return t
}

// sweepPresence drops the expired entries of every topic, and the topics
// left empty. The caller holds mu.
func (c *controlState) sweepPresence(now time.Time) {
	for name, t := range c.topics {
		t.purge(now)
		if len(t.entries) == 0 {
			delete(c.topics, name)
		}
	}
	c.nextSweep = now.Add(presenceSweepEvery)
}

// purge drops the entries that expired at or before now, soonest first.
func (t *presenceTopic) purge(now time.Time) {
	for len(t.byExpiry) > 0 && !now.Before(t.byExpiry[0].expires) {
		t.forget(heap.Pop(&t.byExpiry).(*presenceItem))
	}
}

// forget drops it, already out of byExpiry, from entries and users.
func (t *presenceTopic) forget(it *presenceItem) {
	delete(t.entries, it.entry.Session)
	t.dropUser(it.entry.User)
}

func (t *presenceTopic) addUser(user string) {
	if user != "" {
		t.users[user]++
	}
}

func (t *presenceTopic) dropUser(user string) {
	if user == "" {
		return
	}
	if t.users[user]--; t.users[user] <= 0 {
		delete(t.users, user)
	}
}

// Revoke records r until r.Until; when the user or token is revoked
// already, the later Until is kept.
func (s *Store) Revoke(ctx context.Context, r control.Revocation) error {
	return s.locked(ctx, func(c *controlState, _ time.Time) error {
		field := r.Key()
		if field == "" {
			return errRevocation
		}
		if old, ok := c.revoked[field]; !ok || old.Until.Before(r.Until) {
			c.revoked[field] = r
		}
		return nil
	})
}

// Revocations lists the revocations whose Until is after now, and drops
// the others.
func (s *Store) Revocations(ctx context.Context) ([]control.Revocation, error) {
	return lockedRead(ctx, s, func(c *controlState, now time.Time) []control.Revocation {
		return keepLive(c.revoked, func(r control.Revocation) bool { return r.Until.After(now) })
	})
}

// keepLive deletes from m the values live rejects and returns the others.
func keepLive[K comparable, V any](m map[K]V, live func(V) bool) []V {
	out := make([]V, 0, len(m))
	for k, v := range m {
		if !live(v) {
			delete(m, k)
			continue
		}
		out = append(out, v)
	}
	return out
}

// Announce records n as live for ttl from now.
func (s *Store) Announce(ctx context.Context, n control.NodeInfo, ttl time.Duration) error {
	return s.locked(ctx, func(c *controlState, now time.Time) error {
		if ttl <= 0 {
			return errAnnounceTTL
		}
		c.nodes[n.ID] = announced{info: n, expires: now.Add(ttl)}
		return nil
	})
}

// Nodes lists the nodes whose last announcement has not expired, and
// drops the others.
func (s *Store) Nodes(ctx context.Context) ([]control.NodeInfo, error) {
	return lockedRead(ctx, s, func(c *controlState, now time.Time) []control.NodeInfo {
		live := keepLive(c.nodes, func(a announced) bool { return now.Before(a.expires) })
		out := make([]control.NodeInfo, len(live))
		for i, a := range live {
			out[i] = a.info
		}
		return out
	})
}
