package defaults_test

import (
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
