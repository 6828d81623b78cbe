// Package defaults applies the rule every Config of the module follows
// (docs/ARCHITECTURE.md): a field left at zero means the package's
// default; for a bound that cannot be turned off, a negative value does
// too.
package defaults

import (
	"log/slog"
	"time"
)

// Positive sets *v to def unless *v is positive: zero or negative means
// the default.
func Positive[T ~int | ~int64 | ~float64](v *T, def T) {
	if *v <= 0 {
		*v = def
	}
}

// Zero sets *v to def when *v is its type's zero value: a negative number
// keeps its own meaning (often "no limit").
func Zero[T comparable](v *T, def T) {
	var zero T
	if *v == zero {
		*v = def
	}
}

// Logger sets a nil *l to a logger that discards every record.
func Logger(l **slog.Logger) {
	if *l == nil {
		*l = slog.New(slog.DiscardHandler)
	}
}

// Clock sets a nil *now to time.Now.
func Clock(now *func() time.Time) {
	if *now == nil {
		*now = time.Now
	}
}
