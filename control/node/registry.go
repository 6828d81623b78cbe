package node

import (
	"sync"

	"github.com/tidings-io/tidings/session"
)

// sessionsOf is what the registry returns.
type sessionsOf = []*session.Session

// registry is the node's sessions by id and by user.
type registry struct {
	mu     sync.RWMutex
	byID   map[string]*session.Session
	byUser map[string]map[*session.Session]struct{}
}

func (r *registry) init() {
	r.byID = make(map[string]*session.Session)
	r.byUser = make(map[string]map[*session.Session]struct{})
}

func (r *registry) add(s *session.Session) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.byID[s.ID()] = s
	if u := s.Subject(); u != "" {
		set := r.byUser[u]
		if set == nil {
			set = make(map[*session.Session]struct{})
			r.byUser[u] = set
		}
		set[s] = struct{}{}
	}
}

func (r *registry) remove(s *session.Session) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.byID[s.ID()] == s {
		delete(r.byID, s.ID())
	}
	if u := s.Subject(); u != "" {
		if set := r.byUser[u]; set != nil {
			delete(set, s)
			if len(set) == 0 {
				delete(r.byUser, u)
			}
		}
	}
}

// find returns the sessions t names.
func (r *registry) find(t Target) sessionsOf {
	r.mu.RLock()
	defer r.mu.RUnlock()
	if t.Session != "" {
		if s := r.byID[t.Session]; s != nil {
			return sessionsOf{s}
		}
		return nil
	}
	out := make(sessionsOf, 0, len(r.byUser[t.User]))
	for s := range r.byUser[t.User] {
		out = append(out, s)
	}
	return out
}

// all returns every session.
func (r *registry) all() sessionsOf {
	r.mu.RLock()
	defer r.mu.RUnlock()
	out := make(sessionsOf, 0, len(r.byID))
	for _, s := range r.byID {
		out = append(out, s)
	}
	return out
}
