package gate_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/tidings-io/tidings/internal/gate"
)

func TestGateAdmitsUntilClosedAndWaitsForWhatItAdmitted(t *testing.T) {
	var g gate.Gate
	if g.Closed() {
		t.Fatal("a new gate is closed")
	}
	if !g.Enter() {
		t.Fatal("an open gate refused a unit")
	}
	g.Close()
	g.Close()
	if !g.Closed() {
		t.Fatal("Closed = false after Close")
	}
	if g.Enter() {
		t.Fatal("a closed gate admitted a unit")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if err := g.Wait(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Wait with a unit inside = %v, want the context's deadline", err)
	}
	waited := make(chan error)
	go func() { waited <- g.Wait(context.Background()) }()
	g.Leave()
	if err := <-waited; err != nil {
		t.Fatalf("Wait after the last unit left = %v, want nil", err)
	}
}
