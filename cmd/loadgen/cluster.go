//go:build linux

package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// Group names of the cluster scenario's ladder and sweep rows.
const (
	clusterLadderGroup = "cluster cross-node ladder"
	clusterSweepGroup  = "cluster cross-node batch sweep"
)

// clusterRun is the state of one run of the cluster scenario: the
// subscribers' spec, the deliveries per topic and the Redis in use.
type clusterRun struct {
	r        *runner
	n        int
	spec     subSpec
	perTopic []int
	redis    *redisBackend // nil in the memory phase
}

// clusterStep is what one publishing step of the cluster scenario measured.
type clusterStep struct {
	o        phaseOut
	redisCPU time.Duration
	calls    uint64
	callsOK  bool
}

// cluster compares one in-memory node with two nodes over Redis
// (subscribers on node 2, publisher on node 1) at the same rate, and one
// Redis-backed node alone to separate the Redis hop from the cross-node
// one. -cluster-phases picks the phases; -rates turns the cross-node phase
// into a rate ladder, -batches into a sweep of publish batch sizes.
func (r *runner) cluster(ctx context.Context) ([]row, []string, error) {
	c := &clusterRun{r: r, n: r.cfg.conns[0], spec: r.cfg.clusterSpec()}
	c.perTopic = c.spec.deliveriesPerTopic(c.n)
	var rows []row
	notes := []string{"cluster: broker CPU, RSS and cpu_us_per_message of the Redis phases are the sum of the nodes and redis-server(s); redis_calls_per_request counts evalsha, eval, publish and spublish calls"}
	if r.cfg.hasPhase("memory") {
		r.setStatus("[cluster] single node")
		ts, stop, err := r.brokers(ctx, 1)
		if err != nil {
			return nil, notes, err
		}
		rs, err := c.phase(ctx, "1 node, memory", ts[0], ts[0], ts)
		stop()
		rows = append(rows, rs...)
		if err != nil {
			return rows, notes, err
		}
	}
	if !r.cfg.hasPhase("redis") && !r.cfg.hasPhase("cross") {
		return rows, notes, nil
	}
	dir := filepath.Join(r.tmp, fmt.Sprintf("redis-%d", r.run))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return rows, notes, err
	}
	r.setStatus("[cluster] starting Redis")
	rb, err := startRedisBackend(ctx, r.cfg.redisBin, dir, r.cfg.redisCluster)
	if err != nil {
		return rows, notes, err
	}
	defer rb.stop()
	c.redis = rb
	nodes := 1
	if r.cfg.hasPhase("cross") {
		nodes = 2
	}
	ts, stop, err := r.brokers(ctx, nodes, rb.brokerArgs()...)
	if err != nil {
		return rows, notes, err
	}
	defer stop()
	all := append(append([]target{}, ts...), rb.targets()...)
	if r.cfg.hasPhase("redis") {
		rs, err := c.phase(ctx, "1 node + "+rb.name(), ts[0], ts[0], all)
		rows = append(rows, rs...)
		if err != nil {
			return rows, notes, err
		}
	}
	if !r.cfg.hasPhase("cross") {
		return rows, notes, nil
	}
	var rs []row
	switch {
	case len(r.cfg.rates) > 0:
		rs, err = c.ladder(ctx, ts[0], ts[1], all)
	case len(r.cfg.batches) > 0:
		rs, err = c.sweep(ctx, ts[0], ts[1], all)
	default:
		rs, err = c.phase(ctx, "2 nodes + "+rb.name(), ts[0], ts[1], all)
	}
	rows = append(rows, rs...)
	if err != nil {
		return rows, notes, err
	}
	if r.cfg.hasPhase("memory") && len(r.cfg.rates) == 0 && len(r.cfg.batches) == 0 {
		single, cross := rows[0].M, rows[len(rows)-1].M
		rows = append(rows, row{Group: "cluster vs single node, same rate", Label: fmt.Sprintf("%d subs, %s msgs/s", c.n, human(r.cfg.rate)), M: []metric{
			{"p50_ratio", get(cross, "p50_ms") / get(single, "p50_ms")},
			{"p99_ratio", get(cross, "p99_ms") / get(single, "p99_ms")},
		}})
	}
	return rows, notes, nil
}

// open starts the subscribers on subTo and waits until all are ready;
// the returned function stops them.
func (c *clusterRun) open(ctx context.Context, subTo target, all []target) (*fleet, func(), error) {
	r := c.r
	fl, err := newFleet(r.cfg, c.n, []string{subTo.ws}, c.spec, 0)
	if err != nil {
		return nil, nil, err
	}
	r.setFleet(fl, pidsOf(all))
	done := func() { r.setFleet(nil, nil); fl.stop() }
	if _, err := fl.openAll(ctx, c.n, connectLimit(c.n), r.setStatus); err != nil {
		done()
		return nil, nil, err
	}
	return fl, done, nil
}

// openWithPublisher opens the subscribers on subTo, as open does, and a
// publisher to pubTo; the returned function stops both.
func (c *clusterRun) openWithPublisher(ctx context.Context, pubTo, subTo target, all []target) (*fleet, *publisher, func(), error) {
	fl, done, err := c.open(ctx, subTo, all)
	if err != nil {
		return nil, nil, nil, err
	}
	pub := newPublisher(pubTo.http, c.spec, c.r.cfg.payload, c.r.cfg.pubOpts())
	return fl, pub, func() { pub.close(); done() }, nil
}

// step publishes at rate through pub and measures the phase, with the
// Redis CPU and publish-path calls when Redis is in use.
func (c *clusterRun) step(ctx context.Context, fl *fleet, pub *publisher, rate float64, all []target, name string) (clusterStep, error) {
	var s clusterStep
	var r0 procSample
	var c0 uint64
	var err0 error
	if c.redis != nil {
		r0 = sampleAll(c.redis.pids())
		c0, err0 = publishCalls(c.redis.addrs())
	}
	o, err := c.r.measure(ctx, fl, pub, rate, c.r.cfg.duration, c.perTopic, all, name)
	s.o = o
	if err != nil || c.redis == nil {
		return s, err
	}
	s.redisCPU = sampleAll(c.redis.pids()).CPU - r0.CPU
	c1, err1 := publishCalls(c.redis.addrs())
	if err0 == nil && err1 == nil && c1 >= c0 {
		s.calls, s.callsOK = c1-c0, true
	}
	return s, nil
}

// metrics are a step's figures: the common ones, the publish requests
// and the cost per message.
func (s clusterStep) metrics(rate float64, redis bool) []metric {
	ms := s.o.metrics(rate)
	sent := float64(max(s.o.pub.sent, 1))
	ms = append(ms,
		metric{"publish_requests", float64(s.o.pub.requests)},
		metric{"cpu_us_per_message", 1e6 * s.o.brokerCPU.Seconds() / sent},
	)
	if redis {
		ms = append(ms, metric{"redis_cpu_us_per_message", 1e6 * s.redisCPU.Seconds() / sent})
		if s.callsOK {
			ms = append(ms, metric{"redis_calls_per_request", float64(s.calls) / float64(max(s.o.pub.requests, 1))})
		}
	}
	return ms
}

// phase runs one fixed-rate phase on fresh subscriptions.
func (c *clusterRun) phase(ctx context.Context, label string, pubTo, subTo target, all []target) ([]row, error) {
	r := c.r
	fl, pub, done, err := c.openWithPublisher(ctx, pubTo, subTo, all)
	if err != nil {
		return nil, err
	}
	defer done()
	r.setStatus(fmt.Sprintf("[cluster: %s]", label))
	s, err := c.step(ctx, fl, pub, r.cfg.rate, all, "cluster-"+strings.ReplaceAll(label, " ", "-"))
	if err != nil {
		return nil, err
	}
	ms := append([]metric{{"subscribers", float64(c.n)}, {"topics", float64(c.spec.numTopics())}}, s.metrics(r.cfg.rate, c.redis != nil)...)
	return []row{{Group: "cluster", Label: label, M: ms}}, nil
}

// ladder runs the cross-node phase at each of -rates (messages/s) on the
// same subscriptions, counting each step on its own, and stops after the
// first step that is not lossless with p99 under -p99-limit.
func (c *clusterRun) ladder(ctx context.Context, pubTo, subTo target, all []target) ([]row, error) {
	r := c.r
	fl, pub, done, err := c.openWithPublisher(ctx, pubTo, subTo, all)
	if err != nil {
		return nil, err
	}
	defer done()
	limit := float64(r.cfg.p99Limit) / float64(time.Millisecond)
	var rows []row
	for _, rate := range r.cfg.rates {
		label := fmt.Sprintf("%s msgs/s", human(rate))
		r.setStatus(fmt.Sprintf("[cluster ladder: %s]", label))
		s, err := c.step(ctx, fl, pub, rate, all, "cluster-ladder-"+human(rate))
		if err != nil {
			return rows, err
		}
		p99 := s.o.ph.lat.quantile(0.99) / 1000
		achieved := float64(s.o.pub.sent) / s.o.pub.elapsed.Seconds()
		pass := s.o.lossless() && p99 < limit && achieved >= 0.95*rate
		ms := append([]metric{{"subscribers", float64(c.n)}, {"target_messages_per_s", rate}}, s.metrics(rate, true)...)
		ms = append(ms, metric{"pass", b2f(pass)})
		rows = append(rows, row{Group: fmt.Sprintf("%s, %d subscribers", clusterLadderGroup, c.n), Label: label, M: ms})
		if !pass {
			break
		}
		time.Sleep(500 * time.Millisecond) // let the queues empty
	}
	return rows, nil
}

// sweep runs the cross-node phase at -rate once per -batches size on the
// same subscriptions.
func (c *clusterRun) sweep(ctx context.Context, pubTo, subTo target, all []target) ([]row, error) {
	r := c.r
	fl, done, err := c.open(ctx, subTo, all)
	if err != nil {
		return nil, err
	}
	defer done()
	var rows []row
	for _, b := range r.cfg.batches {
		o := r.cfg.pubOpts()
		o.batch = b
		pub := newPublisher(pubTo.http, c.spec, r.cfg.payload, o)
		label := fmt.Sprintf("batch %d", b)
		r.setStatus(fmt.Sprintf("[cluster sweep: %s]", label))
		s, err := c.step(ctx, fl, pub, r.cfg.rate, all, fmt.Sprintf("cluster-batch-%d", b))
		pub.close()
		if err != nil {
			return rows, err
		}
		ms := append([]metric{{"subscribers", float64(c.n)}, {"batch", float64(b)}}, s.metrics(r.cfg.rate, true)...)
		rows = append(rows, row{Group: fmt.Sprintf("%s, %d subscribers, %s msgs/s", clusterSweepGroup, c.n, human(r.cfg.rate)), Label: label, M: ms})
		time.Sleep(500 * time.Millisecond)
	}
	return rows, nil
}
