package chaos

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tidings-io/tidings/internal/wstest"
)

// synth feeds the checker a synthetic history.
type synth struct {
	t *testing.T
	c *checker
	s *subChecker
}

func newSynth(t *testing.T) *synth {
	c := newChecker(time.Now(), 100)
	return &synth{t: t, c: c, s: c.subscriber("s1")}
}

// data is the published value of key: every kind the workload sends,
// chosen by key.
func synthData(key string) string {
	return string(makeData(rand.New(rand.NewPCG(uint64(len(key)), 7)), key))
}

// pub registers a message and its acknowledgments.
func (y *synth) pub(key, topic string, marker bool, acks ...ack) {
	y.c.register(&pubRecord{Key: key, Topic: topic, Data: []byte(synthData(key)), Keyed: true, Marker: marker})
	for _, a := range acks {
		a := a
		y.c.tried(key, attempt{API: "http", Node: "n1", Outcome: "200", Ack: &a})
	}
}

func (y *synth) frame(raw string) {
	y.t.Helper()
	f, err := wstest.DecodeFrame([]byte(raw))
	if err != nil {
		y.t.Fatal(err)
	}
	y.s.frame(f)
}

func (y *synth) subscribed(topic string, recovered bool, off uint64, epoch string) {
	y.frame(fmt.Sprintf(`{"type":"subscribed","ref":"s:%s","topic":%q,"recovered":%v,"offset":%d,"epoch":%q}`, topic, topic, recovered, off, epoch))
}

func (y *synth) subscribedPattern(pattern string) {
	y.frame(fmt.Sprintf(`{"type":"subscribed","ref":"s:%s","topic":%q,"recovered":false}`, pattern, pattern))
}

// msg delivers key's message with the given id and position; sub is the
// pattern for a delivery through a wildcard; data "" is the published
// value.
func (y *synth) msg(topic, sub, key, id string, off uint64, epoch, data string) {
	if data == "" {
		data = synthData(key)
	}
	s := ""
	if sub != "" {
		s = fmt.Sprintf(`,"sub":%q`, sub)
	}
	y.frame(fmt.Sprintf(`{"type":"message","topic":%q,"id":%q,"offset":%d,"epoch":%q,"time":"2025-01-01T00:00:00Z","data":%s%s}`,
		topic, id, off, epoch, data, s))
}

func (y *synth) reset(topic, sub string, off uint64, epoch, reason string) {
	s := ""
	if sub != "" {
		s = fmt.Sprintf(`,"sub":%q`, sub)
	}
	y.frame(fmt.Sprintf(`{"type":"reset","topic":%q,"epoch":%q,"offset":%d,"reason":%q%s}`, topic, epoch, off, reason, s))
}

// history plays a clean history, altered by mutation, and returns the
// checker after finish. Topic chaos.t0 has 4 messages in epoch E1; Redis
// then loses them and the topic goes on in E2, where ck.p0.5 is applied
// again (allowed: its record was lost) and ck.m.0 is the final marker.
// Subscriber s1 holds chaos.t0 and chaos.*, over two sessions, the
// second resuming from offset 2.
func history(t *testing.T, mutation string) *checker {
	y := newSynth(t)
	const t0, star = "chaos.t0", "chaos.*"
	y.pub("ck.p0.1", t0, false, ack{"id1", 1, "E1"})
	y.pub("ck.p0.2", t0, false, ack{"id2", 2, "E1"})
	switch mutation {
	case "offset reused":
		y.pub("ck.p0.3", t0, false, ack{"id3", 2, "E1"})
	default:
		y.pub("ck.p0.3", t0, false, ack{"id3", 3, "E1"})
	}
	y.pub("ck.p0.5", t0, false, ack{"id5", 4, "E1"}, ack{"id5b", 1, "E2"})
	y.pub("ck.m.0", t0, true, ack{"idm", 2, "E2"})
	if mutation == "double-applied idempotent publish" {
		// A retry of ck.p0.1 was published again in the same epoch.
		y.c.tried("ck.p0.1", attempt{API: "ws", Node: "n2", Outcome: "published", Ack: &ack{"id1x", 9, "E1"}})
	}
	y.s.watch(t0, star)

	// Session 1: from the start.
	y.s.open(1, "n1")
	y.s.subscribe(t0, nil)
	y.s.subscribe(star, nil)
	y.subscribed(t0, false, 0, "E1")
	y.subscribedPattern(star)
	switch mutation {
	case "wrong id":
		y.msg(t0, "", "ck.p0.1", "idX", 1, "E1", "")
	default:
		y.msg(t0, "", "ck.p0.1", "id1", 1, "E1", "")
	}
	y.msg(t0, star, "ck.p0.1", "id1", 1, "E1", "")
	y.msg(t0, "", "ck.p0.2", "id2", 2, "E1", "")
	switch mutation {
	case "duplicate":
		y.msg(t0, "", "ck.p0.2", "id2", 2, "E1", "")
	case "reset backwards":
		y.reset(t0, "", 1, "E1", "gap")
		y.msg(t0, "", "ck.p0.2", "id2", 2, "E1", "")
	case "phantom":
		y.msg(t0, "", "ck.p9.9", "id9", 3, "E1", `{"k":"ck.p9.9"}`)
	}
	switch mutation {
	case "wrong data byte":
		// What an HTML-escaping re-encoder makes of the value.
		d := synthData("ck.p0.2")
		if strings.Contains(d, "<") {
			d = strings.Replace(d, "<", `\u003c`, 1)
		} else {
			d = d[:1] + " " + d[1:]
		}
		y.msg(t0, star, "ck.p0.2", "id2", 2, "E1", d)
	default:
		y.msg(t0, star, "ck.p0.2", "id2", 2, "E1", "")
	}
	y.s.closed("EOF")

	// Session 2: resumes from 2@E1.
	y.s.open(2, "n2")
	since := y.s.since(t0)
	if mutation == "" && (since == nil || *since != (streamPos{Epoch: "E1", Offset: 2})) {
		t.Fatalf("resume position %v, want 2@E1", since)
	}
	y.s.subscribe(t0, since)
	y.s.subscribe(star, nil)
	switch mutation {
	case "needless recovered:false":
		y.subscribed(t0, false, 4, "E1")
	default:
		y.subscribed(t0, true, 4, "E1")
	}
	y.subscribedPattern(star)
	switch mutation {
	case "needless recovered:false":
		// The stream goes on after 4: nothing to replay.
	case "silent gap":
		y.msg(t0, "", "ck.p0.5", "id5", 4, "E1", "")
	default:
		y.msg(t0, "", "ck.p0.3", "id3", 3, "E1", "")
		y.msg(t0, "", "ck.p0.5", "id5", 4, "E1", "")
	}
	y.msg(t0, star, "ck.p0.5", "id5", 4, "E1", "")
	switch mutation {
	case "silent epoch change":
	default:
		y.reset(t0, "", 0, "E2", "history_lost")
	}
	y.reset(t0, star, 0, "E2", "history_lost")
	y.msg(t0, "", "ck.p0.5", "id5b", 1, "E2", "")
	if mutation != "wildcard gap" {
		y.msg(t0, star, "ck.p0.5", "id5b", 1, "E2", "")
	}
	if mutation != "lost acknowledged message" {
		y.msg(t0, "", "ck.m.0", "idm", 2, "E2", "")
	}
	y.msg(t0, star, "ck.m.0", "idm", 2, "E2", "")
	y.s.freeze()
	y.s.closed("closed by the test")
	y.c.finish()
	return y.c
}

func TestCheckerCleanHistory(t *testing.T) {
	t.Parallel()
	c := history(t, "")
	if n := c.count(); n != 0 {
		t.Fatalf("%d violations in a clean history:\n%s", n, c.report())
	}
	if c.stats.CrossEpochDups != 1 {
		t.Errorf("cross-epoch duplicates %d, want 1 (ck.p0.5 in E1 and E2)", c.stats.CrossEpochDups)
	}
	if c.stats.Messages != 11 || c.stats.Resumes != 1 || c.stats.Recovered != 1 || c.stats.LostResets != 2 {
		t.Errorf("stats %+v", c.stats)
	}
}

// TestCheckerCatches breaks one property at a time: each must be reported
// as its kind, and nothing else may be.
func TestCheckerCatches(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		mutation string
		want     []string // the kinds reported
	}{
		{"duplicate", []string{kDuplicate}},
		{"silent gap", []string{kGap}},
		{"wrong data byte", []string{kData}},
		{"lost acknowledged message", []string{kLost}},
		{"double-applied idempotent publish", []string{kDouble}},
		{"silent epoch change", []string{kEpoch}},
		{"reset backwards", []string{kReset}},
		{"needless recovered:false", []string{kResume}},
		{"wildcard gap", []string{kGap}},
		{"wrong id", []string{kID}},
		{"phantom", []string{kPhantom, kDuplicate}},   // the phantom takes offset 3, so the real 3 repeats it
		{"offset reused", []string{kReused, kDouble}}, // ck.p0.3 acknowledged at 2, delivered at 3
	} {
		t.Run(tc.mutation, func(t *testing.T) {
			t.Parallel()
			c := history(t, tc.mutation)
			got := sortedKeys(c.kinds)
			want := slices.Clone(tc.want)
			slices.Sort(want)
			if !slices.Equal(got, want) {
				t.Fatalf("kinds %v, want %v\n%s", got, want, c.report())
			}
			rep := c.report()
			if !strings.Contains(rep, "["+tc.want[0]+"]") {
				t.Fatalf("report does not show the %s:\n%s", tc.want[0], rep)
			}
			t.Logf("%s", rep)
		})
	}
}

func TestCheckerEvidence(t *testing.T) {
	t.Parallel()
	c := history(t, "duplicate")
	rep := c.report()
	// The stream's frames up to the duplicate, and the publish behind it.
	for _, want := range []string{"s1 chaos.t0", `"offset":2`, "publish ck.p0.2 to chaos.t0", "http to n1"} {
		if !strings.Contains(rep, want) {
			t.Errorf("report lacks %q:\n%s", want, rep)
		}
	}
}

func TestMakeDataIsValidJSONHoldingItsKey(t *testing.T) {
	t.Parallel()
	rng := rand.New(rand.NewPCG(1, 2))
	for i := 0; i < 200; i++ {
		key := fmt.Sprintf("ck.p%d.%d", i%7, i)
		d := makeData(rng, key)
		if !json.Valid(d) {
			t.Fatalf("not JSON: %s", d)
		}
		if got := keyOf(d); got != key {
			t.Fatalf("keyOf(%s) = %q, want %q", d, got, key)
		}
	}
}

func TestMatch(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		pattern, topic string
		want           bool
	}{
		{"chaos.*", "chaos.t0", true},
		{"chaos.*", "chaos.deep.t6", false},
		{"chaos.>", "chaos.deep.t6", true},
		{"chaos.>", "chaos", false},
		{"chaos.deep.*", "chaos.deep.t6", true},
		{"chaos.deep.*", "chaos.t0", false},
		{"chaos.t0", "chaos.t0", true},
	} {
		if got := match(tc.pattern, tc.topic); got != tc.want {
			t.Errorf("match(%q, %q) = %v", tc.pattern, tc.topic, got)
		}
	}
}

func TestFaultScheduleIsSeeded(t *testing.T) {
	t.Parallel()
	gen := func(seed uint64) string {
		g := newFaultGen(rand.New(rand.NewPCG(seed, 1)), 3)
		var out []string
		for i := 0; i < 14; i++ {
			out = append(out, g.next().String())
		}
		return strings.Join(out, " ")
	}
	if a, b := gen(7), gen(7); a != b {
		t.Fatalf("same seed, different schedules:\n%s\n%s", a, b)
	}
	if gen(7) == gen(8) {
		t.Fatal("different seeds, same schedule")
	}
	plan := func() string { return fmt.Sprint(newFaultGen(rand.New(rand.NewPCG(7, 1)), 1).plan(12 * time.Second)) }
	if a, b := plan(), plan(); a != b || a == "[]" {
		t.Fatalf("plans of one seed differ or are empty:\n%s\n%s", a, b)
	}
	s := gen(7)
	for _, k := range faultKinds {
		if strings.Count(s, k+"(") != 2 {
			t.Errorf("kind %s appears %d times in 14 faults, want 2: %s", k, strings.Count(s, k+"("), s)
		}
	}
}

// A pattern does not resume: its stream is owed the final marker when
// the marker's publish began after the subscription was answered, and
// not when it began before (the session was between connections).
func TestCheckerPatternOwesMarkersPublishedAfterItsSubscribe(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name  string
		start time.Duration // of the marker's publish, since the run began
		want  []string
	}{
		{"published after the subscribe", time.Hour, []string{kLost}},
		{"published before the subscribe", 0, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c := newChecker(time.Now().Add(-time.Minute), 100) // the subscribe is answered a minute in
			y := &synth{t: t, c: c, s: c.subscriber("s1")}
			const t0, star = "chaos.t0", "chaos.*"
			c.register(&pubRecord{Key: "ck.m.0", Topic: t0, Data: []byte(synthData("ck.m.0")), Keyed: true, Marker: true})
			c.tried("ck.m.0", attempt{API: "http", Node: "n1", Outcome: "200", Start: tc.start, End: tc.start, Ack: &ack{"idm", 1, "E1"}})
			y.s.watch(star)
			y.s.open(1, "n1")
			y.s.subscribe(star, nil)
			y.subscribedPattern(star)
			y.s.freeze()
			y.s.closed("closed by the test")
			c.finish()
			if got := sortedKeys(c.kinds); !slices.Equal(got, tc.want) {
				t.Fatalf("kinds %v, want %v\n%s", got, tc.want, c.report())
			}
		})
	}
}
