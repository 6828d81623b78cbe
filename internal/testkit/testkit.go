// Package testkit holds helpers shared by the module's tests, so that each
// package does not keep its own copy of them. It is imported only from
// _test.go files.
package testkit

import (
	"context"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

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
