package telemetry

import (
	"context"

	"go.opentelemetry.io/otel/metric"
)

// Observation reports one value of an asynchronous instrument, with the
// attributes of opts, while the metrics are read.
type Observation func(value int64, opts ...metric.ObserveOption)

// Observed is an asynchronous int64 instrument of a family that Observe
// registers: made by Counter, UpDownCounter or Gauge.
type Observed struct {
	kind                    observedKind
	name, unit, description string
	read                    func(Observation)
}

type observedKind uint8

const (
	counterKind observedKind = iota
	upDownCounterKind
	gaugeKind
)

// Counter is an asynchronous int64 counter for Observe: read reports its
// totals each time the metrics are read.
func Counter(name, unit, description string, read func(Observation)) Observed {
	return Observed{counterKind, name, unit, description, read}
}

// UpDownCounter is an asynchronous int64 up-down counter for Observe:
// read reports its values each time the metrics are read.
func UpDownCounter(name, unit, description string, read func(Observation)) Observed {
	return Observed{upDownCounterKind, name, unit, description, read}
}

// Gauge is an asynchronous int64 gauge for Observe: read reports its
// values each time the metrics are read.
func Gauge(name, unit, description string, read func(Observation)) Observed {
	return Observed{gaugeKind, name, unit, description, read}
}

// Observe creates the instruments of family and registers one callback
// that has each of them report its values when the metrics are read.
func (in *Instruments) Observe(family ...Observed) {
	insts := make([]metric.Int64Observable, len(family))
	all := make([]metric.Observable, len(family))
	for i, f := range family {
		unit, desc := metric.WithUnit(f.unit), metric.WithDescription(f.description)
		switch f.kind {
		case counterKind:
			insts[i] = create(in, f.name, metric.Meter.Int64ObservableCounter, []metric.Int64ObservableCounterOption{unit, desc})
		case upDownCounterKind:
			insts[i] = create(in, f.name, metric.Meter.Int64ObservableUpDownCounter, []metric.Int64ObservableUpDownCounterOption{unit, desc})
		default:
			insts[i] = create(in, f.name, metric.Meter.Int64ObservableGauge, []metric.Int64ObservableGaugeOption{unit, desc})
		}
		all[i] = insts[i]
	}
	in.RegisterCallback(func(_ context.Context, o metric.Observer) error {
		for i, f := range family {
			f.read(func(value int64, opts ...metric.ObserveOption) {
				o.ObserveInt64(insts[i], value, opts...)
			})
		}
		return nil
	}, all...)
}
