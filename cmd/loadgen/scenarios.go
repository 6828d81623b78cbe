//go:build linux

package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// runScenario runs the configured scenario once and returns its rows.
func (r *runner) runScenario(ctx context.Context) ([]row, []string, error) {
	switch r.cfg.scenario {
	case "idle":
		return r.idle(ctx)
	case "broadcast":
		return r.broadcast(ctx)
	case "fanout-many":
		return r.fixedRate(ctx, subSpec{Kind: "spread", Prefix: "bench.fan.", Topics: r.cfg.topics, Per: r.cfg.perConn})
	case "wildcard":
		return r.fixedRate(ctx, subSpec{Kind: "wildcard", Topics: r.cfg.topics})
	case "churn":
		return r.churn(ctx)
	case "cluster":
		return r.cluster(ctx)
	}
	return nil, nil, fmt.Errorf("unknown scenario %q", r.cfg.scenario)
}

// idle opens N connections, each subscribed to one topic, and measures
// the broker's RSS once they are all in.
func (r *runner) idle(ctx context.Context) ([]row, []string, error) {
	var rows []row
	var notes []string
	for _, n := range r.cfg.conns {
		k := r.cfg.nodes
		if k == 0 && r.cfg.url == "" {
			// Each broker holds one file per connection plus a few.
			per := hardFileLimit() - 500
			k = (n + per - 1) / per
		}
		k = max(k, 1)
		if k > 1 {
			notes = append(notes, fmt.Sprintf("idle %d: spread over %d independent brokers (one process may open at most %d files here, a hard limit an unprivileged process cannot raise); RSS and baseline are their sums",
				n, k, hardFileLimit()))
		}
		r.setStatus(fmt.Sprintf("[idle %d, %d node(s)] starting", n, k))
		ts, stop, err := r.brokers(ctx, k)
		if err != nil {
			return rows, notes, err
		}
		row, err := r.idleOnce(ctx, n, ts)
		stop()
		if err != nil {
			return rows, notes, err
		}
		rows = append(rows, row)
	}
	return rows, notes, nil
}

func (r *runner) idleOnce(ctx context.Context, n int, ts []target) (row, error) {
	pids := pidsOf(ts)
	if len(pids) < len(ts) {
		return row{}, errors.New("idle: the broker's pid is unknown; give -broker-pid")
	}
	for _, t := range ts {
		if lim := openFileLimit(t.pid); lim > 0 && (n+len(ts)-1)/len(ts) > lim-100 {
			return row{}, usageErr{fmt.Sprintf("idle: %d connections over %d broker(s) is more than the open-file limit of %d per process allows; use -nodes", n, len(ts), lim)}
		}
	}
	time.Sleep(time.Second)
	base := sampleAll(pids)
	var urls []string
	for _, t := range ts {
		urls = append(urls, t.ws)
	}
	fl, err := newFleet(r.cfg, n, urls, subSpec{Kind: "one", Topic: "bench.idle"}, 0)
	if err != nil {
		return row{}, err
	}
	defer fl.stop()
	r.setFleet(fl, pids)
	defer r.setFleet(nil, nil)
	r.setStatus(fmt.Sprintf("[idle %d]", n))
	cum, err := fl.openAll(ctx, n, connectLimit(n), r.setStatus)
	if err != nil {
		return row{}, err
	}
	_, ph, _ := fl.takePhase()
	r.setStatus(fmt.Sprintf("[idle %d] settling %s", n, r.cfg.duration))
	s0 := sampleAll(pids)
	stopProf := r.profile(ctx, ts, r.cfg.duration, fmt.Sprintf("idle-%d", n))
	select {
	case <-ctx.Done():
		return row{}, ctx.Err()
	case <-time.After(r.cfg.duration):
	}
	stopProf()
	s1 := sampleAll(pids)
	cum, _, _ = fl.poll()
	rt := runtimeStats(ts)
	ms := []metric{
		{"connections", float64(cum.ready)},
		{"nodes", float64(len(ts))},
		{"baseline_rss_mb", float64(base.RSS) / (1 << 20)},
		{"rss_mb", float64(s1.RSS) / (1 << 20)},
		{"kb_per_conn", float64(s1.RSS-base.RSS) / 1024 / float64(n)},
		{"kb_per_conn_incl_baseline", float64(s1.RSS) / 1024 / float64(n)},
		{"broker_idle_cpu_pct", 100 * (s1.CPU - s0.CPU).Seconds() / s1.At.Sub(s0.At).Seconds()},
		{"connect_p50_ms", ph.readyLat.quantile(0.5) / 1000},
		{"connect_p99_ms", ph.readyLat.quantile(0.99) / 1000},
		{"dial_errors", float64(cum.dialErrs)},
		{"closed_by_broker", float64(cum.serverClosed)},
	}
	for _, k := range []string{"go_goroutines", "go_memstats_stack_inuse_bytes", "go_memstats_heap_inuse_bytes", "go_memstats_sys_bytes"} {
		if v, ok := rt[k]; ok {
			name := strings.TrimPrefix(k, "go_memstats_")
			if strings.HasSuffix(name, "_bytes") {
				ms = append(ms, metric{strings.TrimSuffix(name, "_bytes") + "_kb_per_conn", v / 1024 / float64(n)})
			} else {
				ms = append(ms, metric{name + "_per_conn", v / float64(n)})
			}
		}
	}
	return row{Group: "idle", Label: fmt.Sprintf("%d connections", n), M: ms}, nil
}

// runtimeStats sums the go_* gauges of the brokers' /metrics, when they
// expose them (Prometheus Go collector).
func runtimeStats(ts []target) map[string]float64 {
	out := map[string]float64{}
	for _, t := range ts {
		resp, err := http.Get(t.http + "/metrics")
		if err != nil {
			continue
		}
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 8<<20))
		resp.Body.Close()
		for _, line := range strings.Split(string(b), "\n") {
			f := strings.Fields(line)
			if len(f) != 2 || !strings.HasPrefix(f[0], "go_") {
				continue
			}
			if v, err := strconv.ParseFloat(f[1], 64); err == nil {
				out[f[0]] += v
			}
		}
	}
	return out
}

// broadcast runs the rate ladder for each subscriber count.
func (r *runner) broadcast(ctx context.Context) ([]row, []string, error) {
	var rows []row
	for _, s := range r.cfg.conns {
		rs, err := r.broadcastOnce(ctx, s)
		rows = append(rows, rs...)
		if err != nil {
			return rows, nil, err
		}
	}
	return rows, nil, nil
}

func (r *runner) broadcastOnce(ctx context.Context, s int) ([]row, error) {
	r.setStatus(fmt.Sprintf("[broadcast %d] starting", s))
	ts, stop, err := r.brokers(ctx, 1)
	if err != nil {
		return nil, err
	}
	defer stop()
	spec := subSpec{Kind: "one", Topic: "bench.broadcast"}
	fl, err := newFleet(r.cfg, s, []string{ts[0].ws}, spec, 0)
	if err != nil {
		return nil, err
	}
	defer fl.stop()
	r.setFleet(fl, pidsOf(ts))
	defer r.setFleet(nil, nil)
	if _, err := fl.openAll(ctx, s, connectLimit(s), r.setStatus); err != nil {
		return nil, err
	}
	pub := newPublisher(ts[0].http, spec, r.cfg.payload, r.cfg.pubOpts())
	perTopic := []int{s}
	var rows []row
	for _, rate := range r.cfg.rates {
		msgs := rate / float64(s)
		label := fmt.Sprintf("%d subs, %s/s", s, human(rate))
		r.setStatus(fmt.Sprintf("[broadcast %s]", label))
		o, err := r.measure(ctx, fl, pub, msgs, r.cfg.stepDuration, perTopic, ts, fmt.Sprintf("broadcast-%d-%s", s, human(rate)))
		if err != nil {
			return rows, err
		}
		ms := append([]metric{{"subscribers", float64(s)}, {"target_deliveries_per_s", rate}}, o.metrics(msgs)...)
		p99 := o.ph.lat.quantile(0.99) / 1000
		achieved := float64(o.pub.sent) / o.pub.elapsed.Seconds()
		pass := o.lossless() && p99 < float64(r.cfg.p99Limit)/float64(time.Millisecond) && achieved >= 0.95*msgs
		ms = append(ms, metric{"pass", b2f(pass)})
		rows = append(rows, row{Group: fmt.Sprintf("broadcast ladder, %d subscribers", s), Label: label, M: ms})
		// A slow step goes on to the next rate, so that the plot shows the
		// curve; loss, cut sessions, a publisher that cannot keep up or a
		// p99 beyond 100 times the limit end the ladder.
		if !o.lossless() || achieved < 0.95*msgs || p99 > 100*float64(r.cfg.p99Limit)/float64(time.Millisecond) {
			break
		}
		// Let the writers' queues empty before the next step.
		time.Sleep(500 * time.Millisecond)
	}
	return rows, nil
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

func get(ms []metric, name string) float64 {
	for _, m := range ms {
		if m.Name == name {
			return m.Value
		}
	}
	return math.NaN()
}

// fixedRate runs fanout-many and wildcard: N sessions subscribed by spec,
// one publishing phase at -rate over all of spec's topics.
func (r *runner) fixedRate(ctx context.Context, spec subSpec) ([]row, []string, error) {
	n := r.cfg.conns[0]
	r.setStatus(fmt.Sprintf("[%s %d] starting", r.cfg.scenario, n))
	ts, stop, err := r.brokers(ctx, 1)
	if err != nil {
		return nil, nil, err
	}
	defer stop()
	fl, err := newFleet(r.cfg, n, []string{ts[0].ws}, spec, 0)
	if err != nil {
		return nil, nil, err
	}
	defer fl.stop()
	r.setFleet(fl, pidsOf(ts))
	defer r.setFleet(nil, nil)
	if _, err := fl.openAll(ctx, n, connectLimit(n), r.setStatus); err != nil {
		return nil, nil, err
	}
	perTopic := spec.deliveriesPerTopic(n)
	pub := newPublisher(ts[0].http, spec, r.cfg.payload, r.cfg.pubOpts())
	r.setStatus(fmt.Sprintf("[%s %d, %s msgs/s]", r.cfg.scenario, n, human(r.cfg.rate)))
	o, err := r.measure(ctx, fl, pub, r.cfg.rate, r.cfg.duration, perTopic, ts, r.cfg.scenario)
	if err != nil {
		return nil, nil, err
	}
	subs := 0
	for i := 0; i < n; i++ {
		subs += len(spec.patterns(i))
	}
	ms := append([]metric{{"sessions", float64(n)}, {"subscriptions", float64(subs)}, {"topics", float64(spec.numTopics())}}, o.metrics(r.cfg.rate)...)
	var notes []string
	if !o.lossless() {
		notes = append(notes, fmt.Sprintf("%s: loss or cut sessions (see missing/gaps/closed); last errors: %s %s", r.cfg.scenario, strings.Join(o.end.errs, "; "), o.pub.lastErr))
	}
	return []row{{Group: r.cfg.scenario, Label: fmt.Sprintf("%d sessions, %s msgs/s", n, human(r.cfg.rate)), M: ms}}, notes, nil
}

// churn keeps N subscribers on one topic while workers open -churn-rate
// new sessions per second (each subscribes, then disconnects after
// -churn-life), and the publisher broadcasts at -rate.
func (r *runner) churn(ctx context.Context) ([]row, []string, error) {
	n := r.cfg.conns[0]
	r.setStatus(fmt.Sprintf("[churn %d] starting", n))
	ts, stop, err := r.brokers(ctx, 1)
	if err != nil {
		return nil, nil, err
	}
	defer stop()
	spec := subSpec{Kind: "one", Topic: "bench.churn"}
	fl, err := newFleet(r.cfg, n, []string{ts[0].ws}, spec, 2)
	if err != nil {
		return nil, nil, err
	}
	defer fl.stop()
	pids := pidsOf(ts)
	r.setFleet(fl, pids)
	defer r.setFleet(nil, nil)
	if _, err := fl.openAll(ctx, n, connectLimit(n), r.setStatus); err != nil {
		return nil, nil, err
	}
	rss0 := sampleAll(pids)
	per := r.cfg.churnRate / float64(len(fl.workers))
	if err := fl.command(func(w *workerProc) workerCmd {
		return workerCmd{Op: "churn", First: 10_000_000 * (w.first/max(w.count, 1) + 1), Rate: per, Life: r.cfg.churnLife}
	}); err != nil {
		return nil, nil, err
	}
	r.setStatus(fmt.Sprintf("[churn %d + %s/s] warming up", n, human(r.cfg.churnRate)))
	time.Sleep(r.cfg.churnLife + time.Second)
	pub := newPublisher(ts[0].http, spec, r.cfg.payload, r.cfg.pubOpts())
	r.setStatus(fmt.Sprintf("[churn %d + %s/s, %s msgs/s]", n, human(r.cfg.churnRate), human(r.cfg.rate)))
	o, err := r.measure(ctx, fl, pub, r.cfg.rate, r.cfg.duration, nil, ts, "churn")
	if err != nil {
		return nil, nil, err
	}
	if err := fl.command(func(*workerProc) workerCmd { return workerCmd{Op: "stopchurn"} }); err != nil {
		return nil, nil, err
	}
	// After the churners are gone the broker should be back near where it
	// started: a leak per session shows here.
	time.Sleep(2 * time.Second)
	rss1 := sampleAll(pids)
	cum, _, _ := fl.poll()
	el := o.wall.Seconds()
	ms := []metric{
		{"stable_subscribers", float64(n)},
		{"connects_per_s", float64(o.end.opened-o.start.opened) / el},
		{"connect_subscribe_p50_ms", o.ph.readyLat.quantile(0.5) / 1000},
		{"connect_subscribe_p99_ms", o.ph.readyLat.quantile(0.99) / 1000},
		{"dial_errors", float64(o.end.dialErrs - o.start.dialErrs)},
		{"publish_rate", float64(o.pub.sent) / o.pub.elapsed.Seconds()},
		{"deliveries_per_s", float64(o.ph.recv) / el},
	}
	ms = append(ms, latencyMetrics("", &o.ph.lat)...)
	ms = append(ms,
		metric{"gaps", float64(o.ph.gaps)},
		metric{"dups", float64(o.ph.dups)},
		metric{"closed_by_broker", float64(o.end.serverClosed - o.start.serverClosed)},
		metric{"broker_cpu_pct", 100 * o.brokerCPU.Seconds() / el},
		metric{"loadgen_cpu_pct", 100 * o.loadCPU.Seconds() / el},
		metric{"rss_before_mb", float64(rss0.RSS) / (1 << 20)},
		metric{"rss_during_mb", float64(o.rss) / (1 << 20)},
		metric{"rss_after_mb", float64(rss1.RSS) / (1 << 20)},
		metric{"open_after", float64(cum.open)},
	)
	// Sessions that outlive their connection would show here.
	rt := runtimeStats(ts)
	if v, ok := rt["go_goroutines"]; ok {
		ms = append(ms, metric{"goroutines_after", v})
	}
	if v, ok := rt["go_memstats_heap_inuse_bytes"]; ok {
		ms = append(ms, metric{"heap_inuse_after_mb", v / (1 << 20)})
	}
	var notes []string
	if len(o.end.errs) > 0 {
		notes = append(notes, "churn errors: "+strings.Join(o.end.errs, "; "))
	}
	return []row{{Group: "churn", Label: fmt.Sprintf("%d stable + %s connects/s", n, human(r.cfg.churnRate)), M: ms}}, notes, nil
}
