package chaos

import (
	"context"
	"flag"
	"fmt"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/tidings-io/tidings/internal/redistest"
	"github.com/tidings-io/tidings/internal/testkit"
	"go.uber.org/goleak"
)

var (
	flagSeed = flag.Int64("chaos.seed", 0,
		"seed of the chaos run (schedule of faults and operations); 0 runs the default seeds")
	flagDuration = flag.Duration("chaos.duration", 12*time.Second,
		"how long faults are injected in each run, before the end phase and the checks")
	flagKeys = flag.String("chaos.keys", keysAll,
		"idempotency keys the publishers send: all (header, body and batch fields, WebSocket field), header (header and WebSocket field), none")
	flagSubscribers = flag.Int("chaos.subscribers", 210, "WebSocket subscribers in each run")
	flagLogs        = flag.String("chaos.logs", "",
		"directory to keep the broker nodes' logs in, one sub-directory per run (default: a temporary directory, removed)")
)

// defaultSeeds are the runs of `go test` without -chaos.seed.
var defaultSeeds = []struct {
	backend string
	seed    int64
}{{"redis", 1}, {"redis", 2}, {"cluster", 3}}

// Broker settings of every run.
const (
	historySize     = 100000
	redisTimeout    = time.Second
	shutdownTimeout = 3 * time.Second
	// publishers and their pace: about 50 messages a second in all.
	httpPublishers  = 4
	batchPublishers = 1
	wsPublishers    = 2
	publishPace     = 150 * time.Millisecond
	// settleWithin bounds each step of the end phase.
	settleWithin = 30 * time.Second
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// TestChaos runs the workload and the faults against three broker
// processes on one Redis, and on a three-master Redis Cluster, then checks
// every frame. See docs/CHAOS.md.
func TestChaos(t *testing.T) {
	if testing.Short() {
		t.Skip("runs broker and Redis processes under faults")
	}
	switch *flagKeys {
	case keysAll, keysHeader, keysNone:
	default:
		t.Fatalf("-chaos.keys %q: want all, header or none", *flagKeys)
	}
	bin := testkit.BuildBroker(t)
	cases := defaultSeeds
	if *flagSeed != 0 {
		cases = cases[:0:0]
		for _, b := range []string{"redis", "cluster"} {
			cases = append(cases, struct {
				backend string
				seed    int64
			}{b, *flagSeed})
		}
	}
	for _, c := range cases {
		t.Run(fmt.Sprintf("%s/seed=%d", c.backend, c.seed), func(t *testing.T) {
			runChaos(t, bin, runConfig{backend: c.backend, seed: c.seed, duration: *flagDuration,
				keys: *flagKeys, subscribers: *flagSubscribers})
		})
	}
}

type runConfig struct {
	backend     string // redis or cluster
	seed        int64
	duration    time.Duration
	keys        string
	subscribers int
}

// run is one chaos run: its processes, clients and checker.
type run struct {
	t      *testing.T
	cfg    runConfig
	nodes  []*brokerNode
	redis  []*redistest.Server
	chk    *checker
	subs   []*subscriber
	pubs   []*publisher
	faults []string

	ops, retries, sessions, partialBatches atomic.Int64
}

// rng returns the random source of one stream of choices of the run: the
// same seed and stream give the same choices.
func (r *run) rng(stream uint64) *rand.Rand {
	return rand.New(rand.NewPCG(uint64(r.cfg.seed), stream))
}

func runChaos(t *testing.T, bin string, cfg runConfig) {
	r := &run{t: t, cfg: cfg}
	var redisArgs []string
	if cfg.backend == "cluster" {
		cl := redistest.StartCluster(t)
		r.redis = cl.Nodes
		redisArgs = []string{"-redis-cluster", strings.Join(cl.Addrs(), ",")}
	} else {
		srv := redistest.Start(t)
		r.redis = []*redistest.Server{srv}
		redisArgs = []string{"-redis", srv.URL()}
	}
	args := append(redisArgs, "-demo=false",
		"-history-size", strconv.Itoa(historySize), "-history-ttl", "10m",
		"-shutdown-timeout", shutdownTimeout.String(), "-redis-timeout", redisTimeout.String(),
		// No server pings: wstest.Conn answers them from the reading
		// goroutine, and the test writes from another.
		"-heartbeat", "24h",
		"-ip-conn-rate", "0", "-ip-max-conns", "0", "-op-rate", "0", "-publish-rate", "0", "-max-sessions", "0")
	dir := t.TempDir()
	if *flagLogs != "" {
		dir = filepath.Join(*flagLogs, strings.ReplaceAll(t.Name(), "/", "_"))
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for i := 0; i < 3; i++ {
		r.nodes = append(r.nodes, newNode(t, bin, fmt.Sprintf("n%d", i+1), dir, args))
	}
	r.chk = newChecker(time.Now(), historySize)

	// Subscribers.
	subCtx, stopSubs := context.WithCancel(context.Background())
	var subWG sync.WaitGroup
	stopSubscribers := func() {
		stopSubs()
		for _, s := range r.subs {
			s.drop()
		}
		subWG.Wait()
	}
	defer stopSubscribers()
	for i := 0; i < cfg.subscribers; i++ {
		s := r.newSubscriber(i)
		subWG.Add(1)
		go func() {
			defer subWG.Done()
			s.loop(subCtx)
		}()
	}
	if !r.waitSubscribers(time.Now().Add(settleWithin), (*subChecker).settled) {
		t.Fatalf("subscribers not all subscribed within %v", settleWithin)
	}

	// Publishers.
	pubCtx, stopPubsNow := context.WithCancel(context.Background())
	stopNew := make(chan struct{})
	var pubWG sync.WaitGroup
	defer func() {
		stopPubsNow()
		pubWG.Wait()
	}()
	apis := make([]string, 0, httpPublishers+batchPublishers+wsPublishers)
	for i := 0; i < httpPublishers; i++ {
		apis = append(apis, "http")
	}
	for i := 0; i < batchPublishers; i++ {
		apis = append(apis, "batch")
	}
	for i := 0; i < wsPublishers; i++ {
		apis = append(apis, "ws")
	}
	for i, api := range apis {
		p := r.newPublisher(i, api)
		r.pubs = append(r.pubs, p)
		pubWG.Add(1)
		go func() {
			defer pubWG.Done()
			p.loop(pubCtx, stopNew, publishPace)
		}()
	}

	// Faults, in the test's goroutine, one at a time, each healed before
	// the next, at the times of the plan (or late, after a slow one).
	started := time.Now()
	for _, f := range newFaultGen(r.rng(1), len(r.redis)).plan(cfg.duration) {
		time.Sleep(time.Until(started.Add(f.at))) // the quiet time of the schedule
		r.apply(f)
	}

	// End phase: stop publishing, settle, deliver a final marker on
	// every topic, and wait until every subscriber has it.
	close(stopNew)
	r.waitReady(time.Now().Add(settleWithin))
	pubsDone := make(chan struct{})
	go func() {
		pubWG.Wait()
		close(pubsDone)
	}()
	select {
	case <-pubsDone:
	case <-time.After(settleWithin):
		stopPubsNow()
		<-pubsDone
	}
	if !r.waitSubscribers(time.Now().Add(settleWithin), (*subChecker).settled) {
		t.Logf("not every subscriber is subscribed %v after the faults ended", settleWithin)
	}
	markers := r.publishMarkers(time.Now().Add(settleWithin))
	deadline := time.Now().Add(settleWithin)
	r.waitSubscribers(deadline, func(c *subChecker) bool {
		for topic, pos := range markers {
			if !c.reached(topic, pos) {
				return false
			}
		}
		return true
	})
	// A pong shows the session alive, and flushes what was queued before.
	pinged := make([]bool, len(r.subs))
	for i, s := range r.subs {
		pinged[i] = s.ping("quiet") == nil
	}
	deadline = time.Now().Add(10 * time.Second)
	for i, s := range r.subs {
		if pinged[i] {
			s.waitFor(deadline, func(c *subChecker) bool { return c.pong == "quiet" })
		}
		s.event((*subChecker).freeze)
	}
	stopSubscribers()
	r.chk.finish()
	r.summarize()
}

// newSubscriber picks a subscriber's subscriptions from its seed stream:
// one to three exact topics, a pattern now and then, or a pattern alone.
func (r *run) newSubscriber(i int) *subscriber {
	rng := r.rng(1000 + uint64(i))
	var subs []string
	if rng.IntN(10) > 0 {
		for _, j := range rng.Perm(len(topics))[:1+rng.IntN(3)] {
			subs = append(subs, topics[j])
		}
	}
	if len(subs) == 0 || rng.IntN(4) == 0 {
		subs = append(subs, patterns[rng.IntN(len(patterns))])
	}
	s := &subscriber{r: r, name: fmt.Sprintf("s%d", i), subs: subs, net: r.rng(100000 + uint64(i)), changed: make(chan struct{})}
	s.chk = r.chk.subscriber(s.name)
	s.chk.watch(subs...)
	r.subs = append(r.subs, s)
	return s
}

func (r *run) newPublisher(i int, api string) *publisher {
	return &publisher{r: r, idx: i, api: api, opRng: r.rng(2000 + uint64(i)), net: r.rng(3000 + uint64(i)),
		http: &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 4, DisableCompression: true}}}
}

// waitSubscribers waits until cond holds for every subscriber, or the
// deadline, and reports whether it does.
func (r *run) waitSubscribers(deadline time.Time, cond func(*subChecker) bool) bool {
	ok := true
	for _, s := range r.subs {
		if !s.waitFor(deadline, cond) {
			ok = false
		}
	}
	return ok
}

// waitReady waits until every node answers /readyz with 200.
func (r *run) waitReady(deadline time.Time) {
	client := &http.Client{Timeout: time.Second}
	defer client.CloseIdleConnections()
	for _, n := range r.nodes {
		for !n.ready(client) {
			if time.Now().After(deadline) {
				r.chk.violate(&violation{Kind: kUnsettled, Where: n.id, Detail: "not ready after the faults ended:\n" + n.tail(10)})
				break
			}
			time.Sleep(50 * time.Millisecond) // polling /readyz: no event to wait on
		}
	}
}

// publishMarkers publishes one last message on every topic and returns
// the acknowledged positions.
func (r *run) publishMarkers(deadline time.Time) map[string]streamPos {
	p := r.newPublisher(99, "http")
	defer p.http.CloseIdleConnections()
	ctx, cancel := context.WithDeadline(context.Background(), deadline)
	defer cancel()
	out := make(map[string]streamPos)
	for i, topic := range topics {
		key := fmt.Sprintf("ck.m.%d", i)
		rec := &pubRecord{Key: key, Topic: topic, Data: makeData(p.opRng, key), Keyed: r.cfg.keys != keysNone, Marker: true}
		r.chk.register(rec)
		p.publish(ctx, []*pubRecord{rec}, false)
		r.chk.mu.Lock()
		acks := rec.acks()
		r.chk.mu.Unlock()
		if len(acks) == 0 {
			r.chk.violate(&violation{Kind: kUnsettled, Where: topic, Detail: "the final marker was not acknowledged", Keys: []string{key}})
			continue
		}
		out[topic] = streamPos{Epoch: acks[0].Epoch, Offset: acks[0].Offset}
	}
	return out
}

// fault is one fault of the schedule.
type fault struct {
	at     time.Duration // when it starts, after the publishers
	kind   string
	target int           // node or Redis server
	hold   time.Duration // how long before it is healed
	gap    time.Duration // quiet time before it
	frac   float64       // share of client sessions cut
}

func (f fault) String() string {
	switch f.kind {
	case "client-drop":
		return fmt.Sprintf("%s(%.0f%%)", f.kind, 100*f.frac)
	case "pubsub-kill":
		return fmt.Sprintf("%s(redis%d)", f.kind, f.target)
	case "node-term", "node-kill":
		return fmt.Sprintf("%s(n%d,%v)", f.kind, f.target+1, f.hold)
	default:
		return fmt.Sprintf("%s(redis%d,%v)", f.kind, f.target, f.hold)
	}
}

// faultKinds are drawn from a bag holding each kind once, so that every
// seven faults of a schedule hold every kind.
var faultKinds = []string{"node-term", "node-kill", "redis-save-kill", "redis-empty", "pubsub-kill", "redis-pause", "client-drop"}

type faultGen struct {
	rng   *rand.Rand
	redis int
	bag   []string
}

func newFaultGen(rng *rand.Rand, redis int) *faultGen { return &faultGen{rng: rng, redis: redis} }

func (g *faultGen) next() fault {
	if len(g.bag) == 0 {
		g.bag = append(g.bag, faultKinds...)
		g.rng.Shuffle(len(g.bag), func(i, j int) { g.bag[i], g.bag[j] = g.bag[j], g.bag[i] })
	}
	f := fault{kind: g.bag[0], gap: ms(g.rng, 300, 1000)}
	g.bag = g.bag[1:]
	switch f.kind {
	case "node-term":
		f.target, f.hold = g.rng.IntN(3), ms(g.rng, 0, 500)
	case "node-kill":
		f.target, f.hold = g.rng.IntN(3), ms(g.rng, 100, 800)
	case "redis-save-kill", "redis-empty":
		f.target, f.hold = g.rng.IntN(g.redis), ms(g.rng, 200, 800)
	case "redis-pause":
		// Past the broker's -redis-timeout.
		f.target, f.hold = g.rng.IntN(g.redis), redisTimeout+ms(g.rng, 200, 800)
	case "pubsub-kill":
		f.target = g.rng.IntN(g.redis)
	case "client-drop":
		f.frac = 0.1 + 0.3*g.rng.Float64()
	}
	return f
}

// faultCost is what a plan allows for a fault on top of its hold: a
// restart, a shutdown.
const faultCost = 600 * time.Millisecond

// plan returns the faults that start within d: the same for the same
// seed, whatever the machine's speed.
func (g *faultGen) plan(d time.Duration) []fault {
	var out []fault
	var at time.Duration
	for {
		f := g.next()
		at += f.gap
		if at >= d {
			return out
		}
		f.at = at
		out = append(out, f)
		at += f.hold
		if f.kind != "client-drop" && f.kind != "pubsub-kill" {
			at += faultCost
		}
	}
}

func ms(rng *rand.Rand, lo, hi int) time.Duration {
	return time.Duration(lo+rng.IntN(hi-lo+1)) * time.Millisecond
}

// apply injects f and heals it.
func (r *run) apply(f fault) {
	t := r.t
	t.Logf("+%.1fs fault %s (planned at +%.1fs)", r.chk.since().Seconds(), f, f.at.Seconds())
	r.faults = append(r.faults, f.String())
	switch f.kind {
	case "node-term":
		n := r.nodes[f.target]
		if !n.stop(syscall.SIGTERM, shutdownTimeout+5*time.Second) {
			r.chk.violate(&violation{Kind: kShutdown, Where: n.id,
				Detail: fmt.Sprintf("SIGTERM: not exited within -shutdown-timeout %v + 5s; killed\n%s", shutdownTimeout, n.tail(10))})
		}
		time.Sleep(f.hold) // the node stays down this long
		n.start()
	case "node-kill":
		n := r.nodes[f.target]
		n.kill()
		time.Sleep(f.hold) // the node stays down this long
		n.start()
	case "redis-save-kill":
		s := r.redis[f.target]
		if err := saveAndKill(s); err != nil {
			t.Fatalf("stopping redis with its data: %v", err)
		}
		time.Sleep(f.hold) // Redis stays down this long
		s.Restart()
	case "redis-empty":
		s := r.redis[f.target]
		s.Kill()
		time.Sleep(f.hold) // Redis stays down this long
		s.RestartEmpty()
	case "pubsub-kill":
		if _, err := redisAdmin(r.redis[f.target], 2*time.Second, "CLIENT", "KILL", "TYPE", "pubsub"); err != nil {
			t.Logf("CLIENT KILL TYPE pubsub: %v", err)
		}
	case "redis-pause":
		pid, err := redisPID(r.redis[f.target])
		if err != nil {
			t.Fatalf("finding the redis pid: %v", err)
		}
		if err := syscall.Kill(pid, syscall.SIGSTOP); err != nil {
			t.Fatalf("SIGSTOP redis: %v", err)
		}
		time.Sleep(f.hold) // Redis stays paused this long
		if err := syscall.Kill(pid, syscall.SIGCONT); err != nil {
			t.Fatalf("SIGCONT redis: %v", err)
		}
	case "client-drop":
		rng := r.rng(5000 + uint64(len(r.faults)))
		for _, s := range r.subs {
			if rng.Float64() < f.frac {
				s.drop()
			}
		}
		for _, p := range r.pubs {
			if p.api == "ws" && rng.Float64() < f.frac {
				p.dropConn()
			}
		}
	}
}

// summarize logs the run's one-line summary and fails the test with the
// violations, if any.
func (r *run) summarize() {
	t, c := r.t, r.chk
	c.mu.Lock()
	var msgs, acked, unacked, rejected int
	for _, p := range c.pubs {
		if p.Marker {
			continue
		}
		msgs++
		switch {
		case p.Rejected:
			rejected++
		case len(p.acks()) > 0:
			acked++
		default:
			unacked++
		}
	}
	st := c.stats
	c.mu.Unlock()
	n := c.count()
	line := fmt.Sprintf("chaos %s seed=%d duration=%v keys=%s: ops=%d msgs=%d (acked %d, unacked %d, rejected %d) retries=%d partial-batches=%d faults=%d [%s] "+
		"subscribers=%d sessions=%d frames=%d messages=%d resets(gap %d, history_lost %d) resumes=%d (unrecovered %d) "+
		"dups-across-epochs=%d unkeyed-dups=%d violations=%d",
		r.cfg.backend, r.cfg.seed, r.cfg.duration, r.cfg.keys, r.ops.Load(), msgs, acked, unacked, rejected, r.retries.Load(), r.partialBatches.Load(),
		len(r.faults), strings.Join(r.faults, " "), len(r.subs), r.sessions.Load(), st.Frames, st.Messages,
		st.GapResets, st.LostResets, st.Resumes, st.Unrecovered, st.CrossEpochDups, st.UnkeyedDups, n)
	if n > 0 {
		line += " [" + c.kindsLine() + "]"
	}
	t.Log(line)
	if testing.Verbose() {
		fmt.Println(line)
	}
	if n == 0 {
		return
	}
	var logs strings.Builder
	for _, nd := range r.nodes {
		fmt.Fprintf(&logs, "--- last log lines of %s\n%s\n", nd.id, nd.tail(8))
	}
	t.Errorf("seed %d: %d violations\nreplay: go test ./internal/chaos -run 'TestChaos/%s/seed=%d$' -chaos.seed %d -chaos.duration %v -chaos.keys %s -v\n%s\n%s",
		r.cfg.seed, n, r.cfg.backend, r.cfg.seed, r.cfg.seed, r.cfg.duration, r.cfg.keys, c.report(), logs.String())
}
