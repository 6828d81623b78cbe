package client

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"slices"
	"sync"
)

// DefaultMaxPublishBatch is how many concurrent Publish calls one batch
// request carries at most, unless Config.MaxPublishBatch says otherwise.
const DefaultMaxPublishBatch = 100

// maxPublishRequests is how many coalesced publish requests a client has
// in flight at once; calls beyond them wait and go in the next requests.
const maxPublishRequests = 4

// maxPublishBatchBytes bounds the body of a coalesced request, well
// under the broker's default limit of 1 MiB; a call larger than it goes
// alone.
const maxPublishBatchBytes = 512 << 10

// publishQueue merges concurrent Publish calls into batch requests, by
// group commit: a call that finds a request slot free sends at once, for
// itself and whatever queued; calls that arrive while every slot is busy
// queue up, and when a request returns the first of them leads the next
// one. No timer: an idle client sends each Publish alone, at once, as a
// POST /v1/publish.
type publishQueue struct {
	mu      sync.Mutex
	queue   []*publishCall
	running int // requests in flight, or leads handed on
}

// publishCall is one Publish call waiting for its answer.
type publishCall struct {
	topic string
	raw   []byte
	key   string
	// batch is set, before wake, when the call is to send the next
	// request: the calls it carries, the call first.
	batch []*publishCall
	// wake is signalled once: the call is settled, or is to lead.
	wake chan struct{}
	res  Published
	err  error
}

// size is about what call adds to a batch body.
func (call *publishCall) size() int { return len(call.topic) + len(call.raw) + len(call.key) + 48 }

// publish sends call, alone or with others, and returns its answer. ctx
// bounds the wait in the queue; once its request is sent the call is
// settled by it (its idempotency key makes a retry of yours safe).
func (c *Client) publish(ctx context.Context, call *publishCall) (Published, error) {
	if c.maxBatch <= 1 {
		c.publishAlone(ctx, call)
		return call.res, call.err
	}
	q := &c.pubs
	q.mu.Lock()
	if q.running < maxPublishRequests {
		q.running++
		batch := c.take(call)
		q.mu.Unlock()
		c.lead(ctx, batch)
		return call.res, call.err
	}
	q.queue = append(q.queue, call)
	q.mu.Unlock()
	select {
	case <-call.wake:
	case <-ctx.Done():
		q.mu.Lock()
		if i := slices.Index(q.queue, call); i >= 0 {
			q.queue = slices.Delete(q.queue, i, i+1)
			q.mu.Unlock()
			return Published{}, ctx.Err()
		}
		q.mu.Unlock()
		<-call.wake // taken already: its request is bounded by Config.Timeout
	}
	if call.batch != nil {
		c.lead(ctx, call.batch)
	}
	return call.res, call.err
}

// take removes from the queue the calls that go in one request with
// first, up to the batch bounds, and returns them after first. The
// caller holds q.mu.
func (c *Client) take(first *publishCall) []*publishCall {
	q := &c.pubs
	n, size := 0, first.size()
	for n < len(q.queue) && n+1 < c.maxBatch && size+q.queue[n].size() <= maxPublishBatchBytes {
		size += q.queue[n].size()
		n++
	}
	batch := append([]*publishCall{first}, q.queue[:n]...)
	clear(q.queue[:n])
	q.queue = q.queue[n:]
	if len(q.queue) == 0 {
		q.queue = nil // let go of the backing array
	}
	return batch
}

// lead sends batch, settles its calls, and hands the request slot to the
// next queued call with the calls it is to send.
func (c *Client) lead(ctx context.Context, batch []*publishCall) {
	if len(batch) == 1 {
		c.publishAlone(ctx, batch[0])
	} else {
		// The request answers for every call in it: no one caller's
		// context may end it.
		c.publishTogether(context.WithoutCancel(ctx), batch)
	}
	q := &c.pubs
	q.mu.Lock()
	var next *publishCall
	if len(q.queue) > 0 {
		next = q.queue[0]
		q.queue = q.queue[1:]
		next.batch = c.take(next)
	} else {
		q.running--
	}
	q.mu.Unlock()
	for _, call := range batch[1:] {
		call.wake <- struct{}{}
	}
	if next != nil {
		next.wake <- struct{}{}
	}
}

// publishTogether sends batch as one POST /v1/publish/batch. When the
// broker refuses it whole for one message's sake (a 4xx other than 429),
// or stores it in part, each call not stored is sent again alone, so
// that every call gets its own answer.
func (c *Client) publishTogether(ctx context.Context, batch []*publishCall) {
	msgs := make([]Message, len(batch))
	for i, call := range batch {
		msgs[i] = Message{Topic: call.topic, Data: json.RawMessage(call.raw), IdempotencyKey: call.key}
	}
	res, err := c.PublishBatch(ctx, msgs)
	var e *Error
	switch {
	case err == nil:
		for i, call := range batch {
			call.res = res[i]
		}
		return
	case len(res) == len(batch):
		// Stored in part: the rest goes alone, with the same keys.
	case errors.As(err, &e) && e.Status >= 400 && e.Status < 500 && e.Status != http.StatusTooManyRequests &&
		e.Status != http.StatusUnauthorized:
		// Refused whole: nothing was stored.
		res = make([]Published, len(batch))
	default:
		for _, call := range batch {
			call.err = err
		}
		return
	}
	var wg sync.WaitGroup
	for i, call := range batch {
		if res[i].Offset != 0 {
			call.res = res[i]
			continue
		}
		wg.Go(func() { c.publishAlone(ctx, call) })
	}
	wg.Wait()
}
