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

// config stands for a package's Config.
type config struct {
	Size    int
	Wait    time.Duration
	Rate    float64
	Name    string
	Logger  *slog.Logger
	Now     func() time.Time
	Limit   int // no default: Fill leaves it as it is
	private int
}

func TestFill(t *testing.T) {
	def := config{Size: 8, Wait: time.Second, Rate: 2.5, Name: "tidings",
		Logger: defaults.Discard(), Now: time.Now, private: 9}
	c := defaults.Fill(config{Limit: -1}, def)
	if c.Size != 8 || c.Wait != time.Second || c.Rate != 2.5 || c.Name != "tidings" ||
		c.Logger != def.Logger || c.Now == nil || c.Limit != -1 || c.private != 0 {
		t.Errorf("Fill(zero) = %+v", c)
	}

	c = defaults.Fill(config{Size: -3, Wait: -time.Second, Rate: -1}, def)
	if c.Size != 8 || c.Wait != time.Second || c.Rate != 2.5 {
		t.Errorf("Fill kept a negative bound: %+v", c)
	}

	own, fixed := slog.Default(), time.Unix(1, 0)
	c = defaults.Fill(config{Size: 3, Wait: time.Minute, Rate: 0.5, Name: "own", Logger: own,
		Now: func() time.Time { return fixed }}, def)
	if c.Size != 3 || c.Wait != time.Minute || c.Rate != 0.5 || c.Name != "own" ||
		c.Logger != own || !c.Now().Equal(fixed) {
		t.Errorf("Fill replaced a field that was set: %+v", c)
	}
}

func TestFillZero(t *testing.T) {
	c := defaults.FillZero(config{Size: -1, Rate: -1}, config{Size: 8, Rate: 2.5, Wait: time.Second})
	if c.Size != -1 || c.Rate != -1 || c.Wait != time.Second {
		t.Errorf("FillZero = %+v, want the negatives kept and the zero set", c)
	}
}

func TestFillTakesAStruct(t *testing.T) {
	defer func() {
		if r := recover(); r == nil {
			t.Error("Fill(int) did not panic")
		}
	}()
	defaults.Fill(0, 1)
}

func TestDiscard(t *testing.T) {
	if l := defaults.Discard(); l.Enabled(context.Background(), slog.LevelError) {
		t.Error("Discard() logs errors")
	}
}
