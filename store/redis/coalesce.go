package redis

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	goredis "github.com/redis/go-redis/v9"
	"github.com/tidings-io/tidings/broker"
)

// coalesceBytes bounds the message bodies one coalesced round trip
// carries. A single publish larger than it, like one with more messages
// than Config.MaxCoalesce, goes alone.
const coalesceBytes = 1 << 20

// coalescer merges concurrent publishes into pipelined round trips, by
// group commit: a publish that finds no round trip in flight runs one at
// once, for itself and whatever queued since; publishes that arrive while
// one is in flight queue up, and when it returns the first of them leads
// the next round trip for as many as the bounds let in. Nothing waits on
// a timer: an idle store adds no latency, a busy one fills its round
// trips. No goroutine of its own: the publishers run the round trips. A
// single Redis has one; a cluster one per master, so that a slow master
// holds back only its own publishes.
type coalescer struct {
	// mu guards queue and busy.
	mu sync.Mutex
	// queue holds the publishes waiting for the next round trip, in
	// arrival order.
	queue []*pubCall
	// busy is set while some publisher leads a round trip, or has been
	// told to lead the next one.
	busy bool
}

// pubCall is one Publish call: its script runs and, once settled, its
// outcome.
type pubCall struct {
	runs  []*scriptRun
	msgs  int // how many messages
	bytes int // their bodies' size
	// lead is set, before wake, when the call is to lead a round trip.
	lead bool
	// wake is signalled once: the call's round trip has settled it, or
	// the call is to lead the next one.
	wake chan struct{}
	err  error
}

// scriptRun is one run of a script: its keys and arguments and, for the
// publish script, its messages, whose keys share a slot (on a single
// Redis, all of a call's).
type scriptRun struct {
	msgs []*broker.Message
	keys []string
	args []any
	// val and err are the run's outcome.
	val any
	err error
}

// coalescerOf returns the coalescer c's round trip goes through: the
// store's on a single Redis; on a cluster, that of the master all of c's
// script runs go to, or nil when they go to several (or the slot map
// cannot tell): c then makes a round trip of its own.
func (s *Store) coalescerOf(ctx context.Context, c *pubCall) *coalescer {
	if s.cluster == nil {
		return &s.co
	}
	addr := ""
	for _, r := range c.runs {
		m, err := s.cluster.MasterForKey(ctx, r.keys[0])
		if err != nil {
			return nil
		}
		a := m.Options().Addr
		if addr != "" && a != addr {
			return nil
		}
		addr = a
	}
	return getOrAdd(&s.coMu, s.coByMaster, addr)
}

// submit stores c: in a coalesced round trip, or in one of its own when
// coalescing is off or c spans several masters. ctx bounds only the wait
// in the queue; a round trip has its own timeout, Config.Timeout.
func (s *Store) submit(ctx context.Context, c *pubCall) error {
	var co *coalescer
	if s.cfg.MaxCoalesce >= 0 {
		co = s.coalescerOf(ctx, c)
	}
	if co == nil {
		s.roundTrip([]*pubCall{c})
		return c.err
	}
	co.mu.Lock()
	if !co.busy {
		co.busy = true
		co.mu.Unlock()
		s.lead(co, c)
		return c.err
	}
	co.queue = append(co.queue, c)
	co.mu.Unlock()
	select {
	case <-c.wake:
	case <-ctx.Done():
		co.mu.Lock()
		if i := slices.Index(co.queue, c); i >= 0 {
			co.queue = slices.Delete(co.queue, i, i+1)
			co.mu.Unlock()
			return fmt.Errorf("redis: publishing: waiting for a round trip: %w", ctx.Err())
		}
		co.mu.Unlock()
		<-c.wake // taken already: its round trip is bounded by the timeout
	}
	if c.lead {
		s.lead(co, c)
	}
	return c.err
}

// lead runs a round trip for first and the calls queued on co the bounds
// let in, settles them, and hands the lead to the next queued call, if
// any.
func (s *Store) lead(co *coalescer, first *pubCall) {
	co.mu.Lock()
	batch := []*pubCall{first}
	n, size := first.msgs, first.bytes
	for len(co.queue) > 0 {
		c := co.queue[0]
		if n+c.msgs > s.cfg.MaxCoalesce || size+c.bytes > coalesceBytes {
			break
		}
		n, size = n+c.msgs, size+c.bytes
		batch = append(batch, c)
		co.queue[0] = nil
		co.queue = co.queue[1:]
	}
	co.mu.Unlock()

	s.roundTrip(batch)

	co.mu.Lock()
	var next *pubCall
	if len(co.queue) > 0 {
		next = co.queue[0]
		co.queue[0] = nil
		co.queue = co.queue[1:]
		next.lead = true
	} else {
		co.busy = false
	}
	if len(co.queue) == 0 {
		co.queue = nil // let go of the backing array
	}
	co.mu.Unlock()
	for _, c := range batch[1:] {
		c.wake <- struct{}{}
	}
	if next != nil {
		next.wake <- struct{}{}
	}
}

// roundTrip runs the script runs of batch, pipelined: on a single Redis
// in one pipeline, on a cluster in one per master, at once. Each run is
// one EVALSHA; those Redis did not have the script for run again with
// EVAL. A run that fails fails only its own call. It settles every call.
func (s *Store) roundTrip(batch []*pubCall) {
	ctx, cancel := context.WithTimeout(s.ctx, s.cfg.Timeout)
	defer cancel()
	start := time.Now()
	var runs []*scriptRun
	for _, c := range batch {
		runs = append(runs, c.runs...)
	}
	if s.cluster != nil {
		wildcards := s.wildcardsSeen.Load()
		for _, r := range runs {
			s.withWildcards(r, wildcards)
		}
		s.clusterRoundTrip(ctx, runs)
	} else {
		pipelined(ctx, s.client, publishScript, runs)
	}
	observed := false
	for _, c := range batch {
		c.err = s.settle(c)
		if c.err == nil && !observed {
			s.tel.observe(ctx, start, s.tel.opPublish)
			observed = true
		}
	}
}

// pipelined runs script for each of runs on c in one pipeline, then
// those that found no script with EVAL in another (Redis lost its script
// cache: they did nothing), and records their outcomes.
func pipelined(ctx context.Context, c goredis.Cmdable, script *goredis.Script, runs []*scriptRun) {
	exec := func(runs []*scriptRun, eval bool) {
		pipe := c.Pipeline()
		cmds := make([]*goredis.Cmd, len(runs))
		for i, r := range runs {
			if eval {
				cmds[i] = script.Eval(ctx, pipe, r.keys, r.args...)
			} else {
				cmds[i] = script.EvalSha(ctx, pipe, r.keys, r.args...)
			}
		}
		_, _ = pipe.Exec(ctx) // each run's outcome is in its cmd
		for i, r := range runs {
			r.val, r.err = cmds[i].Val(), cmds[i].Err()
		}
	}
	exec(runs, false)
	var retry []*scriptRun
	for _, r := range runs {
		if isNoScript(r.err) {
			retry = append(retry, r)
		}
	}
	if len(retry) > 0 {
		exec(retry, true)
	}
}

// clusterRoundTrip runs runs in a pipeline per master, at once, each
// master's runs in order. A run that a master redirects (its slot moved)
// runs again alone, through the cluster client, which follows the
// redirection: the script did not run.
func (s *Store) clusterRoundTrip(ctx context.Context, runs []*scriptRun) {
	var masters []*goredis.Client
	byMaster := make(map[*goredis.Client][]*scriptRun)
	for _, r := range runs {
		m, err := s.cluster.MasterForKey(ctx, r.keys[0])
		if err != nil {
			r.val, r.err = nil, err
			continue
		}
		if _, ok := byMaster[m]; !ok {
			masters = append(masters, m)
		}
		byMaster[m] = append(byMaster[m], r)
	}
	var wg sync.WaitGroup
	for _, m := range masters {
		wg.Go(func() { pipelined(ctx, m, publishScript, byMaster[m]) })
	}
	wg.Wait()
	for _, r := range runs {
		if redirected(r.err) {
			wg.Go(func() { r.val, r.err = publishScript.Run(ctx, s.cluster, r.keys, r.args...).Result() })
		}
	}
	wg.Wait()
}

// redirected tells whether err is a cluster redirection or a slot in
// migration: the command did not run.
func redirected(err error) bool {
	for _, p := range []string{"MOVED ", "ASK ", "TRYAGAIN"} {
		if goredis.HasErrorPrefix(err, p) {
			return true
		}
	}
	return false
}

// isNoScript tells whether err means Redis does not have the script.
func isNoScript(err error) bool {
	return err != nil && (errors.Is(err, goredis.ErrNoScript) || goredis.HasErrorPrefix(err, "NOSCRIPT"))
}

// settle fills in the positions of c's stored messages and returns its
// error: when only some of its runs (topics, on a cluster) succeeded, one
// wrapping broker.ErrPartialBatch.
func (s *Store) settle(c *pubCall) error {
	errs := make([]error, len(c.runs))
	for i, r := range c.runs {
		if r.err != nil {
			errs[i] = fmt.Errorf("redis: publishing: %w", r.err)
		} else {
			errs[i] = applyPositions(r.msgs, r.val)
		}
	}
	failed, first := failures(errs)
	switch {
	case failed == 0:
		return nil
	case failed < len(c.runs):
		return fmt.Errorf("%w: %d of %d topics: %w", broker.ErrPartialBatch, failed, len(c.runs), first)
	default:
		return first
	}
}

// failures returns how many of errs are not nil, and the first of them.
func failures(errs []error) (failed int, first error) {
	for _, err := range errs {
		if err != nil {
			failed++
			if first == nil {
				first = err
			}
		}
	}
	return failed, first
}
