//go:build linux

package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"sync"
	"time"
)

// defaultPublishers is how many publish requests may be in flight at
// once unless -publishers says otherwise.
const defaultPublishers = 8

// publisher sends messages at a rate over HTTP: batches to POST
// /v1/publish/batch, or single messages to POST /v1/publish when each
// request carries one message.
type publisher struct {
	client   *http.Client
	base     string
	subs     subSpec
	payload  int
	batch    int // messages per request; 0: rate × interval per tick
	inFlight int // requests in flight at most
	next     int // the next topic index
	mu       sync.Mutex
	perTopic []uint64 // messages accepted per topic index
	requests uint64   // HTTP publish requests sent
	errs     uint64
	lastErr  string
}

// pubOptions are the request shape of a publisher: messages per request
// (0 for one batch per tick) and requests in flight at most.
type pubOptions struct {
	batch, inFlight int
}

// pubOpts returns the publisher options the command line asks for.
func (c config) pubOpts() pubOptions {
	return pubOptions{batch: c.batch, inFlight: c.publishers}
}

// newPublisher returns a publisher to the broker at httpBase over the
// topics of subs. One keep-alive transport carries all its requests,
// with as many connections as requests may be in flight.
func newPublisher(httpBase string, subs subSpec, payload int, o pubOptions) *publisher {
	if o.inFlight <= 0 {
		o.inFlight = defaultPublishers
	}
	return &publisher{
		client: &http.Client{
			Timeout: 10 * time.Second,
			Transport: &http.Transport{
				MaxIdleConnsPerHost: o.inFlight,
				MaxConnsPerHost:     o.inFlight,
				IdleConnTimeout:     90 * time.Second,
			},
		},
		base:     httpBase,
		subs:     subs,
		payload:  payload,
		batch:    o.batch,
		inFlight: o.inFlight,
		perTopic: make([]uint64, subs.numTopics()),
	}
}

// close drops the publisher's idle connections.
func (p *publisher) close() { p.client.CloseIdleConnections() }

// maxBatch is the broker's limit on messages per batch.
const maxBatch = 1000

// pubResult is what one publishing phase achieved.
type pubResult struct {
	sent     uint64 // messages accepted (200)
	failed   uint64
	requests uint64 // HTTP publish requests sent, accepted or not
	elapsed  time.Duration
	behind   int // requests that had to wait for a free sender
	lastErr  string
	perTopic []uint64 // accepted per topic index, this phase
}

// run publishes at rate messages per second for d, with at most
// p.inFlight requests in flight. With p.batch 0 it sends one batch per
// interval (one message per batch below 1/interval); with p.batch N every
// request carries exactly N messages, N/rate seconds apart on average.
func (p *publisher) run(ctx context.Context, rate float64, d, interval time.Duration) pubResult {
	p.mu.Lock()
	before := append([]uint64(nil), p.perTopic...)
	errsBefore, reqBefore := p.errs, p.requests
	p.mu.Unlock()
	size := maxBatch
	if p.batch > 0 {
		size = p.batch
		interval = max(time.Duration(float64(size)/rate*float64(time.Second)), time.Millisecond)
	} else if perTick := rate * interval.Seconds(); perTick < 1 {
		interval = time.Duration(float64(time.Second) / rate)
	}
	sem := make(chan struct{}, p.inFlight)
	var wg sync.WaitGroup
	start := time.Now()
	tk := time.NewTicker(interval)
	defer tk.Stop()
	var res pubResult
	owed := 0
	for {
		el := time.Since(start)
		if el >= d || ctx.Err() != nil {
			break
		}
		// Messages due by now, so that a late tick catches up; with a
		// fixed batch size only whole requests go out.
		due := int(rate*el.Seconds()+1e-9) + 1 - owed
		if p.batch > 0 {
			due = (int(rate*el.Seconds()/float64(size)+1e-9)+1)*size - owed
		}
		for due > 0 && ctx.Err() == nil {
			n := min(due, size)
			due -= n
			owed += n
			topics := make([]int, n)
			for k := range topics {
				topics[k] = p.next % len(p.perTopic)
				p.next++
			}
			select {
			case sem <- struct{}{}:
			default:
				res.behind++
				select {
				case sem <- struct{}{}:
				case <-ctx.Done():
					continue
				}
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer func() { <-sem }()
				p.send(ctx, topics)
			}()
		}
		select {
		case <-tk.C:
		case <-ctx.Done():
		}
	}
	wg.Wait()
	res.elapsed = time.Since(start)
	p.mu.Lock()
	defer p.mu.Unlock()
	res.perTopic = make([]uint64, len(p.perTopic))
	for i := range p.perTopic {
		res.perTopic[i] = p.perTopic[i] - before[i]
		res.sent += res.perTopic[i]
	}
	res.failed = p.errs - errsBefore
	res.requests = p.requests - reqBefore
	res.lastErr = p.lastErr
	return res
}

// body builds the request for messages on the given topic indexes, each
// stamped with ts: a single publication when p.batch is 1, else a batch.
func (p *publisher) body(topics []int, ts int64) (path string, b []byte) {
	b = make([]byte, 0, len(topics)*(p.payload+64)+16)
	msg := func(t int) {
		b = append(b, `{"topic":"`...)
		b = append(b, p.subs.topic(t)...)
		b = append(b, `","data":`...)
		b = appendData(b, ts, p.payload)
		b = append(b, '}')
	}
	if p.batch == 1 && len(topics) == 1 {
		msg(topics[0])
		return "/v1/publish", b
	}
	b = append(b, `{"messages":[`...)
	for k, t := range topics {
		if k > 0 {
			b = append(b, ',')
		}
		msg(t)
	}
	b = append(b, `]}`...)
	return "/v1/publish/batch", b
}

// send posts the messages on the given topic indexes, each stamped with
// the time just before the request.
func (p *publisher) send(ctx context.Context, topics []int) {
	path, b := p.body(topics, time.Now().UnixNano())
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, p.base+path, bytes.NewReader(b))
	req.Header.Set("Content-Type", "application/json")
	resp, err := p.client.Do(req)
	if err == nil {
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			err = fmt.Errorf("publish: HTTP %d: %.200s", resp.StatusCode, body)
		}
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.requests++
	if err != nil {
		p.errs += uint64(len(topics))
		p.lastErr = err.Error()
		return
	}
	for _, t := range topics {
		p.perTopic[t]++
	}
}

// expected returns how many deliveries the messages published in res
// should make, given deliveries per message on each topic.
func expected(res pubResult, perTopic []int) uint64 {
	var n uint64
	for t, c := range res.perTopic {
		n += c * uint64(perTopic[t])
	}
	return n
}
