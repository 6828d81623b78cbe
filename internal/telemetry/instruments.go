package telemetry

import (
	"errors"
	"fmt"
	"log/slog"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/metric"
	metricnoop "go.opentelemetry.io/otel/metric/noop"
)

// Instruments creates instruments on a meter and keeps the errors that the
// meter reports, so that a package registers its instruments in a row and
// reports what failed once, through Err, instead of discarding each error.
//
// An instrument whose creation fails is still returned: the one the meter
// returned with its error (the OpenTelemetry SDK returns a working
// instrument for an invalid name), or a no-op instrument when the meter
// returned none, so that recording never meets a nil instrument.
//
// An Instruments is meant for a package's setup, on one goroutine; it is
// not safe for concurrent use.
type Instruments struct {
	m    metric.Meter
	errs []error
}

// NewInstruments returns an Instruments that creates its instruments on m.
func NewInstruments(m metric.Meter) *Instruments { return &Instruments{m: m} }

// Meter returns the meter the instruments are created on.
func (in *Instruments) Meter() metric.Meter { return in.m }

// Err returns every error the meter reported, each naming its instrument,
// joined; nil when there were none.
func (in *Instruments) Err() error { return errors.Join(in.errs...) }

// keep records err, if any, for the instrument name.
func (in *Instruments) keep(name string, err error) {
	if err != nil {
		in.errs = append(in.errs, fmt.Errorf("instrument %s: %w", name, err))
	}
}

// create makes the instrument name with newInst on in's meter, keeping its
// error; when the meter gives none, on the no-op meter, so that a caller
// always gets one it can use.
func create[I, O any](in *Instruments, name string, newInst func(metric.Meter, string, ...O) (I, error), opts []O) I {
	i, err := newInst(in.m, name, opts...)
	in.keep(name, err)
	if any(i) == nil {
		i, _ = newInst(metricnoop.Meter{}, name)
	}
	return i
}

// Int64Counter creates a synchronous int64 counter.
func (in *Instruments) Int64Counter(name string, opts ...metric.Int64CounterOption) metric.Int64Counter {
	return create(in, name, metric.Meter.Int64Counter, opts)
}

// Int64Histogram creates a synchronous int64 histogram.
func (in *Instruments) Int64Histogram(name string, opts ...metric.Int64HistogramOption) metric.Int64Histogram {
	return create(in, name, metric.Meter.Int64Histogram, opts)
}

// Float64Histogram creates a synchronous float64 histogram.
func (in *Instruments) Float64Histogram(name string, opts ...metric.Float64HistogramOption) metric.Float64Histogram {
	return create(in, name, metric.Meter.Float64Histogram, opts)
}

// RegisterCallback registers f to observe insts when the metrics are
// read. The registration is not returned: the module's callbacks last as
// long as their meter provider.
func (in *Instruments) RegisterCallback(f metric.Callback, insts ...metric.Observable) {
	_, err := in.m.RegisterCallback(f, insts...)
	if err != nil {
		in.errs = append(in.errs, fmt.Errorf("registering a callback: %w", err))
	}
}

// Seconds creates a latency histogram: a float64 histogram in seconds
// with description and the LatencyBuckets boundaries; opts come after
// those and may replace them (WithExplicitBucketBoundaries of
// LatencyBucketsUpTo for shorter latencies).
func (in *Instruments) Seconds(name, description string, opts ...metric.Float64HistogramOption) metric.Float64Histogram {
	return in.Float64Histogram(name, append([]metric.Float64HistogramOption{
		metric.WithUnit("s"),
		metric.WithDescription(description),
		metric.WithExplicitBucketBoundaries(LatencyBuckets()...),
	}, opts...)...)
}

// LogErr logs Err on log, at error level and naming scope, when the meter
// reported errors.
func (in *Instruments) LogErr(log *slog.Logger, scope string) {
	if err := in.Err(); err != nil {
		log.Error("metrics: registering instruments", "scope", scope, "err", err)
	}
}

// HandleErr hands Err, when the meter reported errors, to OpenTelemetry's
// error handler as "<pkg>: metrics: <Err>": the report of a package that
// has no logger.
func (in *Instruments) HandleErr(pkg string) {
	if err := in.Err(); err != nil {
		otel.Handle(fmt.Errorf("%s: metrics: %w", pkg, err))
	}
}
