package node

import (
	"slices"
	"sync"
)

// requests are the node's requests waiting for acknowledgements.
type requests struct {
	mu      sync.Mutex
	pending map[string]*pending
}

// pending is one request: the nodes still to answer and the answers.
type pending struct {
	mu      sync.Mutex // guards want, got and settled
	want    map[string]bool
	got     []envelope
	done    chan struct{}
	settled bool
}

func (r *requests) init() { r.pending = make(map[string]*pending) }

func (r *requests) open(id string, want map[string]bool) *pending {
	p := &pending{want: want, done: make(chan struct{})}
	r.mu.Lock()
	r.pending[id] = p
	r.mu.Unlock()
	return p
}

func (r *requests) close(id string) {
	r.mu.Lock()
	delete(r.pending, id)
	r.mu.Unlock()
}

// answer records an ack; the request is done once every node it waits
// for has answered.
func (r *requests) answer(ack envelope) {
	r.mu.Lock()
	p := r.pending[ack.ID]
	r.mu.Unlock()
	if p == nil {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.settled {
		return
	}
	p.got = append(p.got, ack)
	delete(p.want, ack.From)
	if len(p.want) == 0 {
		p.settled = true
		close(p.done)
	}
}

// replies returns the answers so far.
func (p *pending) replies() []envelope {
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.Clone(p.got)
}

// missing returns the nodes that have not answered, sorted.
func (p *pending) missing() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []string
	for id := range p.want {
		out = append(out, id)
	}
	slices.Sort(out)
	return out
}
