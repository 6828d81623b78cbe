package abuse

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tidings-io/tidings/internal/testkit"
	"go.uber.org/goleak"
	"golang.org/x/time/rate"
)

// Budgets: what hostile clients may make one node hold, as the runtime
// accounts it (heap in use plus goroutine stacks, after a collection),
// above what the node held before they came. Each is the design's bound
// with room for the allocator's rounding; docs/ABUSE.md has the figures
// measured against them.
const (
	// sessionBytes bounds one hostile session that holds no
	// subscription: an idle session, or one that has sent a frame
	// header declaring 64 KiB and one byte of it (an idle session is
	// about 4 KB; the split frame adds what arrived, not what was
	// declared).
	sessionBytes = 16 << 10
	// idleGoroutines bounds the goroutines the node runs for any number
	// of sessions that are idle or wait for the rest of a frame: none
	// per session (one poller wakes a reader when bytes arrive), a few
	// for the pools.
	idleGoroutines = 64
	// patternSessionBytes bounds one session holding its wildcard
	// budget, 2 048 pattern segments (about 260 KB of index nodes), on
	// top of the session itself.
	patternSessionBytes = 512 << 10
	// patternNodeBytes bounds the pattern index on the node at its
	// 262 144 nodes (about 35 MB by design).
	patternNodeBytes = 64 << 20
	// fanoutSessionBytes bounds one session that never reads while
	// messages reach it through its 128 distinct patterns: the patterns
	// (as patternSessionBytes), and its outbound queue of at most 1 024
	// frames, each holding its own header and "sub" tail (about 150 B),
	// the message body being shared by every queue.
	fanoutSessionBytes = patternSessionBytes + 256<<10
	// topicBytes bounds what a topic that a session subscribed to and
	// left holds until the store forgets it, one history TTL later.
	topicBytes = 1 << 10
	// addressConns bounds the connections, and the goroutines, one
	// client address makes the node hold open with idle HTTP keep-alive
	// connections: no more than the WebSocket sessions it may hold
	// (-ip-max-conns, 1 000).
	addressConns = 1000
	// addressBytes bounds the memory one address's idle connections
	// make the node hold.
	addressBytes = 16 << 20
	// nodeBytes bounds what all hostile clients together make the node
	// hold in any attack but history: the pattern index at its 262 144
	// nodes (about 35 MB) and the queues of never-reading sessions are
	// the largest parts.
	nodeBytes = 128 << 20
	// defaultHistoryBytes is the memory store's default history budget
	// (-history-bytes): the bytes of every message in history, on every
	// topic together.
	defaultHistoryBytes = 256 << 20
	// historySlack is what history may hold beyond its budget, which
	// counts the bytes of each message: the allocator's rounding (a
	// 60 002-byte message takes a 64 KiB span), an eighth of the budget,
	// and 8 MiB for the records of the topics and their messages.
	historySlack = 8 << 20
	// historyMessageBytes bounds what one 60 KB message in history
	// holds: a 64 KiB span for its data, its record and its topic's.
	historyMessageBytes = 72 << 10
	// afterSlack is what may remain above the baseline once the
	// attackers have left and what they made the node remember has
	// expired: allocator spans not yet returned.
	afterSlack = 4 << 20
	// afterGoroutines and afterFDs are the goroutines and descriptors
	// that may remain above the baseline once the attackers have left
	// (the probes' own connections come and go).
	afterGoroutines, afterFDs = 8, 8
	// holdMessages is how many messages the well-behaved client
	// receives (one every 20 ms) while the attackers hold what they
	// took, after the attack is in place and before they leave.
	holdMessages = 150
	// goodP99 bounds the well-behaved client's publish→receive latency,
	// 99th percentile, during every attack.
	goodP99 = 100 * time.Millisecond
)

var (
	// run opts in to the suite. make test runs it on its own, after the
	// other packages: it measures a broker process and a client's
	// latency, which tests running at the same time would blur.
	run = flag.Bool("abuse", false, "run the hostile clients against a broker process (about a minute)")
	// long runs the attacks with larger attacker counts.
	long = flag.Bool("abuse.long", false, "run the hostile clients at larger counts (minutes)")
	// brokerBinary names a broker binary to attack instead of building
	// ./cmd/broker: a release, or an older commit for comparison.
	brokerBinary = flag.String("abuse.broker", "", "attack this broker binary instead of building ./cmd/broker")
)

func TestMain(m *testing.M) {
	if addr := os.Getenv(goodClientEnv); addr != "" {
		os.Exit(goodClientMain(addr))
	}
	goleak.VerifyTestMain(m)
}

// scale is how many hostile clients each attack uses.
type scale struct {
	patternSessions, deepPerSession int
	fanoutSessions, fanoutPublishes int
	churnSessions, churnTopics      int
	partialSessions                 int
	keepAliveConns                  int
	historyMessages, historyTopics  int
}

// short is the size of make test; large the size of -abuse.long.
var (
	short = scale{
		patternSessions: 160, deepPerSession: 20,
		fanoutSessions: 100, fanoutPublishes: 60,
		churnSessions: 50, churnTopics: 1000,
		partialSessions: 1000,
		keepAliveConns:  2 * addressConns,
		historyMessages: 1500, historyTopics: 100000,
	}
	large = scale{
		patternSessions: 1000, deepPerSession: 100,
		fanoutSessions: 250, fanoutPublishes: 200,
		churnSessions: 200, churnTopics: 4000,
		partialSessions: 5000,
		keepAliveConns:  5 * addressConns,
		historyMessages: 20000, historyTopics: 500000,
	}
	// mixedShort and mixedLarge are the mixed attack's parts.
	mixedShort = scale{
		patternSessions: 40, deepPerSession: 10,
		fanoutSessions: 20, fanoutPublishes: 30,
		churnSessions: 10, churnTopics: 500,
		partialSessions: 200,
		keepAliveConns:  300,
		historyMessages: 500, historyTopics: 10000,
	}
	mixedLarge = scale{
		patternSessions: 200, deepPerSession: 50,
		fanoutSessions: 80, fanoutPublishes: 100,
		churnSessions: 40, churnTopics: 2000,
		partialSessions: 1000,
		keepAliveConns:  1500,
		historyMessages: 5000, historyTopics: 100000,
	}
)

// env is what an attack works with.
type env struct {
	n   *node
	src *addrs
	// history is the node's history budget, -history-bytes.
	history int64
	// measure takes a measurement now, which counts for the peak.
	measure func() (usage, error)
}

// hold is what an attack leaves in place at its peak.
type hold struct {
	sent int64 // bytes the attackers sent
	// sessions is the hostile sessions (or connections) in place, and
	// perSession what each may make the node hold; cap is the node-wide
	// bound of this attack. The node's growth at the peak must stay
	// within both sessions×perSession+extra and cap.
	sessions   int
	unit       string // what sessions counts: "sessions", "topics"
	perSession int64
	extra      int64
	cap        int64
	// retained is what the node may keep after the attackers have left
	// (history, by design, for its TTL).
	retained int64
	// history is set when what the attack holds is history, which has
	// one budget on the node whoever fills it.
	history bool
	// conns bounds the descriptors the attack may make the node hold
	// open at its peak, goroutines its goroutines (0: not checked).
	conns, goroutines int
	// leave makes the attackers go away.
	leave func()
	// note says what the node did about the attack.
	note string
}

// budget is what the node may hold for the attack at its peak: the
// lesser of its sessions' budgets and its node-wide one.
func (h hold) budget() int64 {
	if h.perSession == 0 {
		return h.cap
	}
	return min(h.cap, int64(h.sessions)*h.perSession+h.extra)
}

// attackFunc sets an attack up and returns what it holds at its peak.
type attackFunc func(ctx context.Context, e *env, sc scale) (hold, error)

// attack is one subtest: an attack and the node it runs against.
type attack struct {
	name string
	args []string // the node's flags besides the defaults
	// history is the node's -history-bytes; 0 leaves the default.
	history int64
	run     attackFunc
	sc      scale
}

// row is one line of the figures table.
type row struct {
	attack            string
	sent, peak, after int64 // bytes sent; the node's growth at the peak and after
	rssPeak           int64
	p99, max          time.Duration // the well-behaved client's latency
	took              time.Duration
}

// TestHostileClients runs each attack, and all of them at once, against
// a broker process with the default limits, while a well-behaved client
// keeps publishing and receiving on the same node. For each it checks
// that what the node holds (heap and stacks after a collection,
// goroutines, descriptors) stays within the budgets at the peak, returns
// to the baseline once the attackers have left, and that the
// well-behaved client received every message, in order, with a p99
// latency under goodP99. The attacks run one after the other, each on a
// node of its own: they measure a whole process.
func TestHostileClients(t *testing.T) {
	if !*run || testing.Short() {
		t.Skip("opt in with -abuse (make test does, after the other packages): runs broker processes under attack for about a minute")
	}
	sc, mixed := short, mixedShort
	if *long {
		sc, mixed = large, mixedLarge
	}
	bin := *brokerBinary
	if bin == "" {
		bin = testkit.BuildBroker(t)
	}
	// The churn attack, and the mixed one that includes it, run with a
	// history TTL and idempotency window of 2 s instead of 5 minutes, so
	// that the forgotten topics (and the history) can be seen to give
	// their memory back within the test. The history attacks run with
	// a history budget of 32 MiB, so that a few seconds of publishing
	// go past it; -abuse.long runs them with the default, 256 MiB.
	shortTTL := []string{"-history-ttl", "2s", "-idempotency-window", "2s"}
	historyBudget := int64(32 << 20)
	if *long {
		historyBudget = defaultHistoryBytes
	}
	attacks := []attack{
		{"deep patterns", nil, 0, deepPatterns, sc},
		{"fan-out through patterns", nil, 0, fanOut, sc},
		{"topic churn", shortTTL, 0, topicChurn, sc},
		{"partial frames", nil, 0, partialFrames, sc},
		{"idle keep-alive", nil, 0, idleKeepAlive, sc},
		{"history", nil, historyBudget, history, sc},
		{"history on many topics", nil, historyBudget, historyTopics, sc},
		{"mixed", shortTTL, historyBudget, mixedAttack, mixed},
	}
	var rows []row
	for _, a := range attacks {
		ok := t.Run(a.name, func(t *testing.T) {
			rows = append(rows, runAttack(t, bin, a))
		})
		if !ok && t.Context().Err() != nil {
			break
		}
	}
	var b strings.Builder
	fmt.Fprintf(&b, "| attack | sent | node held at peak | after | peak RSS | good client p99 (max) | took |\n|---|---|---|---|---|---|---|\n")
	for _, r := range rows {
		fmt.Fprintf(&b, "| %s | %s | +%s | %+d KB | %s | %v (%v) | %v |\n", r.attack, size(r.sent), kb(r.peak), r.after/1024,
			size(r.rssPeak), r.p99.Round(100*time.Microsecond), r.max.Round(100*time.Microsecond), r.took.Round(100*time.Millisecond))
	}
	t.Logf("figures:\n%s", b.String())
}

// size formats a byte count for the table.
func size(n int64) string {
	switch {
	case n >= 10<<20:
		return fmt.Sprintf("%d MB", n>>20)
	case n >= 10<<10:
		return fmt.Sprintf("%d KB", n>>10)
	}
	return fmt.Sprintf("%d B", n)
}

// runAttack starts a node and the well-behaved client, runs the attack,
// and checks the budgets.
func runAttack(t *testing.T, bin string, a attack) row {
	start := time.Now()
	name, args, history := a.name, a.args, a.history
	if history != 0 {
		args = append(slices.Clip(args), "-history-bytes", strconv.FormatInt(history, 10))
	} else {
		history = defaultHistoryBytes
	}
	n := startNode(t, bin, args...)
	good := startGood(t, n.addr)
	base := n.mustUsage(t)
	t.Logf("baseline: %v", base)

	within := 3 * time.Minute
	if *long {
		within = 15 * time.Minute
	}
	ctx, cancel := context.WithTimeout(t.Context(), within)
	defer cancel()
	s := n.startSampler()
	t.Cleanup(s.halt)
	e := &env{n: n, src: &addrs{}, history: history, measure: func() (usage, error) {
		u, err := n.usage()
		if err == nil {
			s.add(u)
		}
		return u, err
	}}
	attackStart := time.Now()
	h, err := a.run(ctx, e, a.sc)
	if h.leave != nil {
		// Whatever happens next, the attackers leave before the node
		// stops.
		t.Cleanup(h.leave)
	}
	if err == nil {
		_, err = e.measure()
	}
	holdStart := time.Now()
	if err == nil {
		// The attackers hold what they took while the well-behaved
		// client receives holdMessages more messages.
		from, err := good.count()
		if err != nil {
			t.Fatal(err)
		}
		testkit.Eventually(t, 60*time.Second, func() error {
			n, err := good.count()
			if err != nil {
				return err
			}
			if got := n - from; got < holdMessages {
				return fmt.Errorf("the well-behaved client received %d messages while the attack held, want %d", got, holdMessages)
			}
			return nil
		})
	}
	peak := s.finish(t)
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	grown := peak.Mem() - base.Mem()
	t.Logf("peak:     %v (%d samples)", peak, s.count)
	leaveStart := time.Now()
	h.leave()

	// The attackers have left: the node returns to its baseline, at
	// once or, for what the store remembers, after the history TTL of
	// 2 s and a sweep. What history keeps for 5 minutes stays: that is
	// checked at once.
	var after usage
	settle := 20 * time.Second
	if h.retained > 0 {
		settle = 2 * time.Second
	}
	settled := await(t, settle, func() error {
		u, err := n.usage()
		if err != nil {
			return err
		}
		after = u
		switch {
		case u.Mem() > base.Mem()+h.retained+afterSlack:
			return fmt.Errorf("the node holds %s more than its baseline (%v), want at most %s", kb(u.Mem()-base.Mem()), u, kb(h.retained+afterSlack))
		case u.Goroutines > base.Goroutines+afterGoroutines:
			return fmt.Errorf("%d goroutines, %d at the baseline", u.Goroutines, base.Goroutines)
		case u.FDs > base.FDs+afterFDs:
			return fmt.Errorf("%d descriptors open, %d at the baseline", u.FDs, base.FDs)
		}
		return nil
	})
	if settled != nil {
		t.Errorf("after the attackers left: %v", settled)
	}
	t.Logf("after:    %v", after)
	t.Logf("took: attack %v, hold %v, back to the baseline %v", holdStart.Sub(attackStart).Round(time.Millisecond),
		leaveStart.Sub(holdStart).Round(time.Millisecond), time.Since(leaveStart).Round(time.Millisecond))
	rep, err := good.finish()
	if err != nil {
		t.Fatalf("well-behaved client: %v", err)
	}
	t.Logf("%s: sent %s, node held +%s at peak (+%d goroutines, +%d fds), %+d KB after; good client: %d messages, p50 %v, p99 %v, max %v (its timers late by %v at p99); %s",
		name, size(h.sent), kb(grown), peak.Goroutines-base.Goroutines, peak.FDs-base.FDs, (after.Mem()-base.Mem())/1024,
		rep.Messages, rep.P50, rep.P99, rep.Max, rep.WakeP99, h.note)

	if grown > h.budget() {
		if h.perSession > 0 {
			t.Errorf("the node held %s above its baseline at the peak for %d hostile %s (%d B each); budget %s (%d B each, at most %s on the node)",
				kb(grown), h.sessions, h.unit, grown/int64(max(h.sessions, 1)), kb(h.budget()), h.perSession, kb(h.cap))
		} else {
			t.Errorf("the node held %s above its baseline at the peak; budget %s", kb(grown), kb(h.cap))
		}
	}
	if h.conns > 0 && peak.FDs-base.FDs > h.conns {
		t.Errorf("the node held %d more descriptors at the peak; budget %d", peak.FDs-base.FDs, h.conns)
	}
	if h.goroutines > 0 && peak.Goroutines-base.Goroutines > h.goroutines {
		t.Errorf("the node ran %d more goroutines at the peak; budget %d", peak.Goroutines-base.Goroutines, h.goroutines)
	}
	for _, p := range rep.Problems {
		t.Errorf("well-behaved client: %s", p)
	}
	if rep.P99 > goodP99 {
		t.Errorf("well-behaved client: p99 latency %v (p50 %v, max %v over %d messages), want under %v; its own timers fired late by %v at p99 (more than a few ms: the host's CPUs were busy too)",
			rep.P99, rep.P50, rep.Max, rep.Messages, goodP99, rep.WakeP99)
	}
	return row{attack: name, sent: h.sent, peak: grown, after: after.Mem() - base.Mem(), p99: rep.P99, max: rep.Max,
		rssPeak: peak.HWM, took: time.Since(start)}
}

// deepPattern is a wildcard pattern of the given segments, its first
// segment named after i.
func deepPattern(i, segments int) string {
	return fmt.Sprintf("q%05d.", i%100000) + strings.Repeat("a.", segments-2) + ">"
}

// deepPatterns: anonymous sessions subscribe to 125-segment patterns,
// each refused with bad_request, then to 16-segment ones, each with a
// first segment of its own (16 index nodes), up to their budget of 2 048
// segments; sessions beyond the node's 262 144 nodes are refused with
// unavailable.
func deepPatterns(ctx context.Context, e *env, sc scale) (hold, error) {
	h := hold{sessions: sc.patternSessions, unit: "sessions", perSession: patternSessionBytes, cap: patternNodeBytes}
	var sent atomic.Int64
	c, err := openCrowd(ctx, sc.patternSessions, 500, e.src, e.n.addr, &sent)
	if err != nil {
		return h, err
	}
	h.leave = c.close
	const perSession = 2048/16 + 2
	var accepted, deepRefused, tooLarge, unavailable atomic.Int64
	err = forEach(ctx, len(c), 16, func(i int) error {
		a := c[i]
		cmds := make([]string, 0, sc.deepPerSession+perSession)
		for j := range sc.deepPerSession {
			cmds = append(cmds, subscribeCmd(deepPattern(i*sc.deepPerSession+j, 125)))
		}
		for j := range perSession {
			cmds = append(cmds, subscribeCmd(fmt.Sprintf("p%d.", i*perSession+j)+strings.Repeat("a.", 14)+">"))
		}
		if err := a.send(cmds...); err != nil {
			return err
		}
		mine := 0
		for j := range cmds {
			f, err := a.next()
			switch {
			case err != nil:
				return fmt.Errorf("session %d, answer %d: %w", i, j, err)
			case j < sc.deepPerSession:
				if f.Type != "error" || f.Code != "bad_request" {
					return fmt.Errorf("a 125-segment pattern answered %+v, want error bad_request", f)
				}
				deepRefused.Add(1)
			case f.Type == "subscribed":
				if mine++; mine > 2048/16 {
					return fmt.Errorf("session %d: %d 16-segment patterns accepted, over its 2048 segments", i, mine)
				}
				accepted.Add(1)
			case f.Type == "error" && f.Code == "too_large":
				tooLarge.Add(1)
			case f.Type == "error" && f.Code == "unavailable":
				unavailable.Add(1)
			default:
				return fmt.Errorf("a 16-segment pattern answered %+v", f)
			}
		}
		a.quiet()
		return nil
	})
	h.sent = sent.Load()
	if err != nil {
		return h, err
	}
	m, err := e.n.metrics()
	if err != nil {
		return h, err
	}
	nodes := m["tidings_pattern_nodes"]
	h.note = fmt.Sprintf("%d deep patterns refused, %d 16-segment patterns accepted (%v index nodes), %d refused too_large, %d unavailable",
		deepRefused.Load(), accepted.Load(), nodes, tooLarge.Load(), unavailable.Load())
	switch {
	case nodes > 1<<18:
		err = fmt.Errorf("%v pattern index nodes, over the node's 262144", nodes)
	case accepted.Load() < int64(sc.patternSessions)*(2048/16) && unavailable.Load() == 0:
		// Sessions get their 128 patterns unless the node is full.
		err = fmt.Errorf("%d patterns accepted, want 128 per session (the node refused none as full)", accepted.Load())
	}
	return h, err
}

// fanOutSegments are the segments of the fan-out attack's deep topic.
var fanOutSegments = strings.Split("f.s1.s2.s3.s4.s5.s6.s7.s8.s9.s10.s11.s12.s13.s14.s15", ".")

// fanOutVariant returns the pattern that replaces by * the segments of
// the fan-out topic whose bits are set in mask (bit 0: the last segment).
func fanOutVariant(mask int) string {
	segs := make([]string, len(fanOutSegments))
	for i, s := range fanOutSegments {
		if mask&(1<<(len(segs)-1-i)) != 0 {
			s = "*"
		}
		segs[i] = s
	}
	return strings.Join(segs, ".")
}

// fanOut: sessions each subscribe to 128 distinct *-variants of a deep
// 16-segment topic (2 048 segments, their budget) and then never read;
// a loopback publisher posts 3.6 KB messages to that topic over HTTP.
// Each message reaches every session once per pattern. The node encodes
// it once for every pattern and cuts the sessions whose queues fill as
// slow consumers.
func fanOut(ctx context.Context, e *env, sc scale) (hold, error) {
	h := hold{sessions: sc.fanoutSessions, unit: "sessions", perSession: fanoutSessionBytes, cap: nodeBytes}
	var sent atomic.Int64
	c, err := openCrowd(ctx, sc.fanoutSessions, 500, e.src, e.n.addr, &sent)
	if err != nil {
		return h, err
	}
	h.leave = c.close
	const perSession = 128
	var accepted atomic.Int64
	err = forEach(ctx, len(c), 16, func(i int) error {
		a := c[i]
		cmds := make([]string, perSession)
		for j := range cmds {
			cmds[j] = subscribeCmd(fanOutVariant(1 + i*perSession + j))
		}
		if err := a.send(cmds...); err != nil {
			return err
		}
		for range cmds {
			f, err := a.next()
			if err != nil {
				return err
			}
			switch {
			case f.Type == "subscribed":
				accepted.Add(1)
			case f.Type == "error" && f.Code == "unavailable":
			default:
				return fmt.Errorf("a *-variant answered %+v", f)
			}
		}
		a.quiet()
		return nil
	})
	if err != nil {
		h.sent = sent.Load()
		return h, err
	}
	before, err := e.n.metrics()
	if err != nil {
		return h, err
	}
	// One publisher, paced so that the queues fill over a few seconds
	// of samples rather than between two of them.
	pub, err := dialPublisher(ctx, e.src.take(), e.n.addr, &sent)
	if err != nil {
		return h, err
	}
	defer pub.close()
	body := fmt.Appendf(nil, `{"topic":%q,"data":"%s"}`, strings.Join(fanOutSegments, "."), strings.Repeat("x", 3600))
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	var queued float64
	for i := range sc.fanoutPublishes {
		if err := pub.publish("/v1/publish", body); err != nil {
			h.sent = sent.Load()
			return h, fmt.Errorf("publish %d: %w", i, err)
		}
		if m, err := e.n.metrics(); err == nil {
			queued = max(queued, m["tidings_outbound_bytes"])
		}
		select {
		case <-tick.C:
		case <-ctx.Done():
			return h, ctx.Err()
		}
	}
	h.sent = sent.Load()
	// The sessions whose queues overflowed are closed as slow
	// consumers once their writer gets to them: at the latest after
	// the write timeout (10 s), as they read nothing. What they hold
	// until then is bounded by their queues, so the test does not wait.
	m, err := e.n.metrics()
	if err != nil {
		return h, err
	}
	h.note = fmt.Sprintf("%d patterns accepted; at most %.0f KB queued for the sessions (tidings_outbound_bytes), %v sessions cut as slow consumers so far (%v by the node's outbound budget)",
		accepted.Load(), queued/1024, m["tidings_slow_consumers_total"]-before["tidings_slow_consumers_total"],
		m["tidings_outbound_budget_cuts_total"]-before["tidings_outbound_budget_cuts_total"])
	return h, nil
}

// topicChurn: sessions subscribe to and unsubscribe from many distinct
// topics (order.<n>), within their command rate, then leave. The node
// runs with a 2 s history TTL and idempotency window, after which the
// store forgets idle topics.
func topicChurn(ctx context.Context, e *env, sc scale) (hold, error) {
	topics := sc.churnSessions * sc.churnTopics
	h := hold{sessions: topics, unit: "topics", perSession: topicBytes, extra: int64(sc.churnSessions) * sessionBytes, cap: nodeBytes}
	var sent atomic.Int64
	c, err := openCrowd(ctx, sc.churnSessions, 500, e.src, e.n.addr, &sent)
	if err != nil {
		return h, err
	}
	h.leave = c.close
	err = forEach(ctx, len(c), len(c), func(i int) error {
		a := c[i]
		// Within the default -op-rate of 500/s and -op-burst of 1 000.
		lim := rate.NewLimiter(450, 900)
		const batch = 50
		for k := 0; k < sc.churnTopics; k += batch {
			cmds := make([]string, 0, 2*batch)
			for j := k; j < min(k+batch, sc.churnTopics); j++ {
				topic := "order." + strconv.Itoa(i*sc.churnTopics+j)
				cmds = append(cmds, subscribeCmd(topic), unsubscribeCmd(topic))
			}
			if err := lim.WaitN(ctx, len(cmds)); err != nil {
				return err
			}
			if err := a.send(cmds...); err != nil {
				return err
			}
			for j := range cmds {
				f, err := a.next()
				if err != nil {
					return err
				}
				if want := [2]string{"subscribed", "unsubscribed"}[j%2]; f.Type != want {
					return fmt.Errorf("session %d: %+v, want %s", i, f, want)
				}
			}
		}
		return nil
	})
	h.sent = sent.Load()
	h.note = fmt.Sprintf("%d topics churned by %d sessions", topics, sc.churnSessions)
	return h, err
}

// partialFrames: sessions each send a frame header declaring 65 536
// bytes and one byte of payload, then nothing.
func partialFrames(ctx context.Context, e *env, sc scale) (hold, error) {
	h := hold{sessions: sc.partialSessions, unit: "sessions", perSession: sessionBytes, cap: nodeBytes, goroutines: idleGoroutines}
	var sent atomic.Int64
	before, err := e.n.metrics()
	if err != nil {
		return h, err
	}
	c, err := openCrowd(ctx, sc.partialSessions, 500, e.src, e.n.addr, &sent)
	if err != nil {
		return h, err
	}
	h.leave = c.close
	frame := partialFrame()
	err = forEach(ctx, len(c), 16, func(i int) error {
		c[i].quiet()
		_ = c[i].nc.SetWriteDeadline(time.Now().Add(ioTimeout))
		_, err := c[i].nc.Write(frame)
		return err
	})
	h.sent = sent.Load()
	if err != nil {
		return h, err
	}
	// The node has read every byte sent after the upgrades.
	want := before["tidings_ws_io_bytes_total{direction=\"in\"}"] + float64(len(c)*len(frame))
	for {
		m, err := e.n.metrics()
		if err != nil {
			return h, err
		}
		if got := m["tidings_ws_io_bytes_total{direction=\"in\"}"]; got >= want {
			break
		}
		select {
		case <-time.After(50 * time.Millisecond):
		case <-ctx.Done():
			return h, fmt.Errorf("the node has not read the partial frames: %w", ctx.Err())
		}
	}
	h.note = fmt.Sprintf("%d sessions each declared 65536 B and sent 1", len(c))
	return h, nil
}

// idleKeepAlive: one address opens many HTTP/1.1 keep-alive connections,
// sends one request on each, and leaves them idle.
func idleKeepAlive(ctx context.Context, e *env, sc scale) (hold, error) {
	h := hold{cap: addressBytes, conns: addressConns + afterFDs, goroutines: addressConns + afterGoroutines}
	var sent atomic.Int64
	src := e.src.take()
	kept := make([]keepAliveConn, sc.keepAliveConns)
	var refused atomic.Int64
	err := forEach(ctx, sc.keepAliveConns, 16, func(i int) error {
		c, ok, err := keepAlive(ctx, src, e.n.addr, "/healthz", &sent)
		if err != nil {
			return err
		}
		if !ok {
			refused.Add(1)
		}
		kept[i] = c
		return nil
	})
	h.leave = func() {
		for _, c := range kept {
			if c.nc != nil {
				_ = c.nc.Close()
			}
		}
	}
	h.sent = sent.Load()
	h.note = fmt.Sprintf("%d connections from %s, each with one request: %d kept idle, %d closed or answered with Connection: close",
		sc.keepAliveConns, src, sc.keepAliveConns-int(refused.Load()), refused.Load())
	return h, err
}

// historyCap is what history may hold on a node whose history budget
// is budget bytes.
func historyCap(budget int64) int64 { return budget + budget/8 + historySlack }

// history: one loopback publisher writes 60 KB messages to distinct
// topics over HTTP, one after the other on one keep-alive connection.
// History keeps them for the history TTL (5 minutes), within its
// node-wide budget: they are what the node is for, so they may stay
// after the publisher has left.
func history(ctx context.Context, e *env, sc scale) (hold, error) {
	h := hold{sessions: sc.historyMessages, unit: "messages", perSession: historyMessageBytes, cap: historyCap(e.history), history: true, leave: func() {}}
	h.retained = h.budget()
	var sent atomic.Int64
	pub, err := dialPublisher(ctx, e.src.take(), e.n.addr, &sent)
	if err != nil {
		return h, err
	}
	defer pub.close()
	data, end := []byte(`"`+strings.Repeat("y", 60000)+`"`), []byte("}")
	for i := 0; i < sc.historyMessages && err == nil; i++ {
		if err = pub.publish("/v1/publish", fmt.Appendf(nil, `{"topic":"h.%d","data":`, i), data, end); err != nil {
			err = fmt.Errorf("message %d: %w", i, err)
		}
		if ctx.Err() != nil {
			err = ctx.Err()
		}
	}
	h.sent = sent.Load()
	h.note = fmt.Sprintf("%d messages of 60 KB to as many topics", sc.historyMessages)
	return h, err
}

// historyTopics: one loopback publisher writes one tiny message to each
// of many distinct topics, in batches of 1 000 (the most a batch may
// hold). History keeps them for the history TTL, within its budget,
// whatever the size of the messages: the records of a topic count too.
func historyTopics(ctx context.Context, e *env, sc scale) (hold, error) {
	n := sc.historyTopics
	h := hold{cap: historyCap(e.history), history: true, leave: func() {}}
	h.retained = h.cap
	var sent atomic.Int64
	pub, err := dialPublisher(ctx, e.src.take(), e.n.addr, &sent)
	if err != nil {
		return h, err
	}
	defer pub.close()
	const batch = 1000
	for i := 0; i < n; i += batch {
		body := []byte(`{"messages":[`)
		for j := i; j < min(i+batch, n); j++ {
			if j > i {
				body = append(body, ',')
			}
			body = fmt.Appendf(body, `{"topic":"m.%d","data":1}`, j)
		}
		body = append(body, "]}"...)
		if err := pub.publish("/v1/publish/batch", body); err != nil {
			h.sent = sent.Load()
			return h, fmt.Errorf("batch at %d: %w", i, err)
		}
	}
	h.sent = sent.Load()
	h.note = fmt.Sprintf("%d one-byte messages to as many topics, in batches of %d", n, batch)
	return h, nil
}

// mixedAttack runs every attack at once, each from addresses of its own,
// and adds their budgets.
func mixedAttack(ctx context.Context, e *env, sc scale) (hold, error) {
	parts := []attackFunc{deepPatterns, fanOut, topicChurn, partialFrames, idleKeepAlive, history, historyTopics}
	holds := make([]hold, len(parts))
	errs := make([]error, len(parts))
	var wg sync.WaitGroup
	for i, p := range parts {
		wg.Go(func() { holds[i], errs[i] = p(ctx, e, sc) })
	}
	wg.Wait()
	h := hold{}
	var notes []string
	// Together they may hold what each may hold, and history its
	// budget once; descriptors are not checked here, the sessions hold
	// theirs by right.
	var history int64
	for _, p := range holds {
		h.sent += p.sent
		if p.history {
			history += p.budget()
		} else {
			h.cap += p.budget()
		}
		if p.note != "" {
			notes = append(notes, p.note)
		}
	}
	h.cap += min(history, historyCap(e.history))
	h.leave = func() {
		for _, p := range holds {
			if p.leave != nil {
				p.leave()
			}
		}
	}
	// History expires within the 2 s TTL here: nothing may stay.
	h.note = strings.Join(notes, "; ")
	return h, errors.Join(errs...)
}
