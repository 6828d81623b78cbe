package node

import (
	"context"
	"slices"
	"strings"
	"time"

	"github.com/tidings-io/tidings/control"
)

// rates remembers the counters of the last announcement.
type rates struct {
	at                   time.Time
	published, delivered uint64
}

// announce records the node and its figures in the backend.
func (n *Node) announce(ctx context.Context) error {
	st := n.cfg.Broker.Stats()
	now := time.Now()
	info := control.NodeInfo{
		ID:            n.cfg.ID,
		Version:       n.cfg.Version,
		Uptime:        now.Sub(n.started).Seconds(),
		Sessions:      st.Sessions,
		Subscriptions: st.ExactSubscriptions + st.WildcardSubscriptions,
		Topics:        st.Topics,
	}
	n.rateMu.Lock()
	if last := n.last; !last.at.IsZero() {
		if d := now.Sub(last.at).Seconds(); d > 0 {
			info.PublishedPerSecond = float64(st.Published-last.published) / d
			info.DeliveredPerSecond = float64(st.Delivered-last.delivered) / d
		}
	}
	n.last = rates{at: now, published: st.Published, delivered: st.Delivered}
	n.rateMu.Unlock()
	return n.cfg.Backend.Announce(ctx, info, 3*n.cfg.AnnounceInterval)
}

// announceLoop announces the node every AnnounceInterval.
func (n *Node) announceLoop() {
	n.every(n.cfg.AnnounceInterval, "announcing the node failed", n.announce)
}

// every runs f every interval, each run bounded by interval, until the
// node closes; a failed run is logged with msg. It ends one of the node's
// loops (wg).
func (n *Node) every(interval time.Duration, msg string, f func(context.Context) error) {
	defer n.wg.Done()
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-n.ctx.Done():
			return
		case <-t.C:
		}
		ctx, cancel := context.WithTimeout(n.ctx, interval)
		err := f(ctx)
		cancel()
		if err != nil && n.ctx.Err() == nil {
			n.log.Warn(msg, "err", err)
		}
	}
}

func sortNodes(nodes []control.NodeInfo) {
	slices.SortFunc(nodes, func(a, b control.NodeInfo) int { return strings.Compare(a.ID, b.ID) })
}
