// Package defaults applies the rule every Config of the module follows
// (docs/ARCHITECTURE.md): a field left at zero means the package's
// default; for a bound that cannot be turned off, a negative value does
// too.
//
// A package states its defaults once, as a value of its Config:
//
//	var configDefaults = Config{QueueSize: DefaultQueueSize, Now: time.Now}
//
//	func (c Config) withDefaults() Config { return defaults.Fill(c, configDefaults) }
package defaults

import (
	"log/slog"
	"reflect"
)

// Fill returns c with each exported field that is unset taken from def:
// unset is zero or, for a number, negative. Fields that def leaves at zero
// are kept, and so are the fields inside a struct-typed field (an
// embedded Config applies its own defaults). T must be a struct type.
func Fill[T any](c, def T) T { return fill(c, def, true) }

// FillZero is Fill for fields where a negative number has a meaning of its
// own (often "no limit"): only zero is unset.
func FillZero[T any](c, def T) T { return fill(c, def, false) }

func fill[T any](c, def T, negative bool) T {
	dst, src := reflect.ValueOf(&c).Elem(), reflect.ValueOf(def)
	if dst.Kind() != reflect.Struct {
		panic("defaults: Fill takes a pointer to a struct, not " + dst.Type().String())
	}
	for i := range dst.NumField() {
		field, value := dst.Field(i), src.Field(i)
		if !field.CanSet() || value.IsZero() {
			continue
		}
		if field.IsZero() || negative && isNegative(field) {
			field.Set(value)
		}
	}
	return c
}

// isNegative reports whether v is a number below zero.
func isNegative(v reflect.Value) bool {
	switch {
	case v.CanInt():
		return v.Int() < 0
	case v.CanFloat():
		return v.Float() < 0
	}
	return false
}

// Positive sets *v to def unless *v is positive: zero or negative means
// the default. It serves a default that depends on another field.
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

// Discard returns a logger that drops every record: the default of a
// Config's Logger.
func Discard() *slog.Logger { return slog.New(slog.DiscardHandler) }
