package memory_test

import (
	"testing"

	"github.com/tidings-io/tidings/broker"
	"github.com/tidings-io/tidings/store/memory"
	"github.com/tidings-io/tidings/store/storetest"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T, opts storetest.Options) broker.Store {
		s := memory.New(memory.Config{HistorySize: opts.HistorySize, HistoryTTL: opts.HistoryTTL})
		t.Cleanup(func() { _ = s.Close() })
		return s
	})
}

func TestClosedStoreRefusesWork(t *testing.T) {
	s := memory.New(memory.Config{})
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Position(t.Context(), "a.b"); err == nil {
		t.Fatal("Position on a closed store succeeded")
	}
	if err := s.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
}
