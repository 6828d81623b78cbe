// Package testkit holds helpers shared by the module's tests, so that each
// package does not keep its own copy of them. It is imported only from
// _test.go files.
package testkit

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/tidings-io/tidings/broker"
)

// Backoff bounds for Eventually: the first pause between tries, and the
// longest it grows to.
const (
	firstPause = time.Millisecond
	maxPause   = 50 * time.Millisecond
)

// Eventually calls cond until it returns nil. It waits 1 ms after the first
// failed try and doubles the pause after each one, up to 50 ms. If within
// passes first, it fails t with cond's last error, which should say what is
// still wrong ("3 sessions, want 0"). The last try is made at the deadline,
// so cond always gets at least one try, however short within is.
func Eventually(t testing.TB, within time.Duration, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(within)
	pause := firstPause
	for {
		err := cond()
		if err == nil {
			return
		}
		left := time.Until(deadline)
		if left <= 0 {
			t.Fatalf("not within %v: %v", within, err)
			return
		}
		time.Sleep(min(pause, left))
		pause = min(2*pause, maxPause)
	}
}

// Clock is a time source a test sets and moves, safe for concurrent use:
// pass its Now where a package takes a clock.
type Clock struct {
	mu  sync.Mutex
	now time.Time
}

// NewClock returns a Clock that reads now until it is moved.
func NewClock(now time.Time) *Clock { return &Clock{now: now} }

// Now returns the clock's time.
func (c *Clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

// Add moves the clock by d.
func (c *Clock) Add(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

// EpochOf returns topic's current epoch in st, starting the topic if it
// has none; an error fails the test.
func EpochOf(t testing.TB, st broker.History, topic string) string {
	t.Helper()
	pos, err := st.Position(context.Background(), topic)
	if err != nil {
		t.Fatalf("Position(%q): %v", topic, err)
	}
	return pos.Epoch
}

// Publish publishes data, which must be JSON, to topic through b and
// returns the message; an error fails the test.
func Publish(t testing.TB, b *broker.Broker, topic, data string) *broker.Message {
	t.Helper()
	msgs, err := b.Publish(context.Background(), []broker.Publication{{Topic: topic, Data: json.RawMessage(data)}})
	if err != nil {
		t.Fatalf("publish %s: %v", topic, err)
	}
	return msgs[0]
}

// PublishTraced posts one message (data 1) to topic through the HTTP API
// at base (http://host:port) with a traceparent header; an error or an
// answer other than 200 fails the test.
func PublishTraced(t testing.TB, base, topic, traceparent string) {
	t.Helper()
	body, _ := json.Marshal(map[string]any{"topic": topic, "data": 1})
	req, err := http.NewRequest(http.MethodPost, base+"/v1/publish", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("traceparent", traceparent)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("publish: %d", resp.StatusCode)
	}
}

// SignToken signs claims with method and key, with a kid header when kid
// is not empty; an error fails the test.
func SignToken(t testing.TB, method jwt.SigningMethod, key any, kid string, claims jwt.Claims) string {
	t.Helper()
	tok := jwt.NewWithClaims(method, claims)
	if kid != "" {
		tok.Header["kid"] = kid
	}
	s, err := tok.SignedString(key)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// Dotted returns every dotted name of 1 to depth segments, each segment
// one of segs, depth first: "a", "a.a", …, "b", ….
func Dotted(segs []string, depth int) []string {
	var names []string
	var grow func(prefix string, n int)
	grow = func(prefix string, n int) {
		for _, s := range segs {
			name := s
			if prefix != "" {
				name = prefix + "." + s
			}
			names = append(names, name)
			if n > 1 {
				grow(name, n-1)
			}
		}
	}
	grow("", depth)
	return names
}

// Subscribers makes n sessions with open, each subscribed to topic, and
// closes them when the test or benchmark ends; an error fails it.
func Subscribers(tb testing.TB, n int, open func() *broker.Session, topic string) []*broker.Session {
	tb.Helper()
	sessions := make([]*broker.Session, 0, n)
	tb.Cleanup(func() {
		for _, s := range sessions {
			s.Close()
		}
	})
	for range n {
		s := open()
		sessions = append(sessions, s)
		if err := s.Subscribe(context.Background(), "", topic, nil); err != nil {
			tb.Fatalf("subscribe %s: %v", topic, err)
		}
	}
	return sessions
}

// BuildBroker builds cmd/broker as shipped (no race detector) into a
// directory of the test's own and returns the binary's path: for tests
// that run brokers as processes of their own.
func BuildBroker(t testing.TB) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "broker")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, "go", "build", "-o", bin, "github.com/tidings-io/tidings/cmd/broker").CombinedOutput()
	if err != nil {
		t.Fatalf("go build ./cmd/broker: %v\n%s", err, out)
	}
	return bin
}

// Buffer is a bytes.Buffer safe for concurrent use: a logger, an exporter
// or a child process's output copier writes to it while the test reads
// it. The zero value is an empty buffer ready to use.
type Buffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

// Write appends p to the buffer.
func (b *Buffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

// String returns what has been written so far.
func (b *Buffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// Prices is a JSON object of about n bytes in the shape of a price feed's
// update (a table of quotes), different for each seq: a message that
// compresses as real ones do.
func Prices(seq, n int) string {
	var b strings.Builder
	fmt.Fprintf(&b, `{"seq":%d,"ts":%d,"quotes":[`, seq, 1735830245123+seq)
	syms := []string{"EURUSD", "GBPUSD", "USDJPY", "AUDUSD", "USDCHF", "EURGBP"}
	for i := 0; b.Len() < n; i++ {
		if i > 0 {
			b.WriteByte(',')
		}
		px := 1.0 + float64((seq*7919+i*104729)%100000)/100000
		fmt.Fprintf(&b, `{"s":"%s","bid":%.5f,"ask":%.5f,"v":%d}`, syms[(seq+i)%len(syms)], px, px+0.00008, (seq+i)%97*100000)
	}
	b.WriteString(`]}`)
	return b.String()
}
