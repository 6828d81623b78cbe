package node

import (
	"context"
	"sync"
	"time"

	"github.com/tidings-io/tidings/control"
)

// revocations are the revoked users and token ids, each until a time.
type revocations struct {
	mu    sync.RWMutex
	users map[string]time.Time
	jtis  map[string]time.Time
}

func (r *revocations) init() {
	r.users = make(map[string]time.Time)
	r.jtis = make(map[string]time.Time)
}

// add records rv, keeping the later until of two.
func (r *revocations) add(rv control.Revocation) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.put(rv)
}

func (r *revocations) put(rv control.Revocation) {
	m, key := r.users, rv.User
	if rv.TokenID != "" {
		m, key = r.jtis, rv.TokenID
	}
	if rv.Until.After(m[key]) {
		m[key] = rv.Until
	}
}

// replace sets the revocations to list, the backend's, keeping the ones
// recorded here that are still running (a broadcast may be ahead of the
// backend's answer).
func (r *revocations) replace(list []control.Revocation, now time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, m := range []map[string]time.Time{r.users, r.jtis} {
		for k, until := range m {
			if !until.After(now) {
				delete(m, k)
			}
		}
	}
	for _, rv := range list {
		r.put(rv)
	}
}

// match reports whether the user or the token id is revoked at now.
func (r *revocations) match(user, jti string, now time.Time) bool {
	r.mu.RLock()
	defer r.mu.RUnlock()
	if len(r.users) == 0 && len(r.jtis) == 0 {
		return false
	}
	if user != "" && r.users[user].After(now) {
		return true
	}
	return jti != "" && r.jtis[jti].After(now)
}

// syncRevocations reads the revocations from the backend.
func (n *Node) syncRevocations(ctx context.Context) error {
	list, err := n.cfg.Backend.Revocations(ctx)
	if err != nil {
		return err
	}
	n.revoked.replace(list, time.Now())
	return nil
}

// revocationLoop reads the revocations again every RevocationSync and
// closes the live sessions they name (a broadcast this node missed).
func (n *Node) revocationLoop() {
	n.every(n.cfg.RevocationSync, "reading revocations failed", func(ctx context.Context) error {
		if err := n.syncRevocations(ctx); err != nil {
			return err
		}
		n.closeRevoked()
		return nil
	})
}
