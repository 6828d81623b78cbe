package defaults_test

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"github.com/tidings-io/tidings/internal/defaults"
)

func TestPositive(t *testing.T) {
	for _, tc := range []struct{ in, want time.Duration }{{0, 5}, {-1, 5}, {3, 3}} {
		v := tc.in
		defaults.Positive(&v, 5)
		if v != tc.want {
			t.Errorf("Positive(%d) = %d, want %d", tc.in, v, tc.want)
		}
	}
}

func TestZero(t *testing.T) {
	for _, tc := range []struct{ in, want int }{{0, 5}, {-1, -1}, {3, 3}} {
		v := tc.in
		defaults.Zero(&v, 5)
		if v != tc.want {
			t.Errorf("Zero(%d) = %d, want %d", tc.in, v, tc.want)
		}
	}
	s := ""
	defaults.Zero(&s, "tidings")
	if s != "tidings" {
		t.Errorf("Zero(\"\") = %q", s)
	}
}

func TestLoggerAndClock(t *testing.T) {
	var l *slog.Logger
	defaults.Logger(&l)
	if l == nil || l.Enabled(context.Background(), slog.LevelError) {
		t.Errorf("Logger(nil) = %v, want a logger that discards", l)
	}
	own := slog.Default()
	defaults.Logger(&own)
	if own != slog.Default() {
		t.Error("Logger replaced a logger that was set")
	}
	var now func() time.Time
	defaults.Clock(&now)
	if now == nil || time.Since(now()) > time.Minute {
		t.Error("Clock(nil) is not time.Now")
	}
	fixed := time.Unix(1, 0)
	now = func() time.Time { return fixed }
	defaults.Clock(&now)
	if !now().Equal(fixed) {
		t.Error("Clock replaced a clock that was set")
	}
}
