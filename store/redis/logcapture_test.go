package redis_test

import (
	"context"
	"fmt"
	"log/slog"
	"sort"
	"sync"
	"testing"
	"time"
)

// record is a captured log record, its attributes as text.
type record struct {
	level, msg string
	attrs      map[string]string
}

// values returns the record's attributes as key=value, sorted.
func (r record) values() []string {
	var out []string
	for k, v := range r.attrs {
		out = append(out, k+"="+v)
	}
	sort.Strings(out)
	return out
}

// logCapture is a slog.Handler that keeps every record.
type logCapture struct {
	mu      sync.Mutex
	records []record
	added   chan struct{} // closed and replaced on every record
	attrs   []slog.Attr
	parent  *logCapture // the capture that holds the records
}

func newLogCapture() *logCapture { return &logCapture{added: make(chan struct{})} }

func (c *logCapture) logger() *slog.Logger { return slog.New(c) }

func (c *logCapture) root() *logCapture {
	if c.parent != nil {
		return c.parent
	}
	return c
}

func (c *logCapture) Enabled(context.Context, slog.Level) bool { return true }

func (c *logCapture) Handle(_ context.Context, r slog.Record) error {
	rec := record{level: r.Level.String(), msg: r.Message, attrs: map[string]string{}}
	add := func(a slog.Attr) bool {
		rec.attrs[a.Key] = fmt.Sprint(a.Value.Resolve().Any())
		return true
	}
	for _, a := range c.attrs {
		add(a)
	}
	r.Attrs(add)
	root := c.root()
	root.mu.Lock()
	root.records = append(root.records, rec)
	close(root.added)
	root.added = make(chan struct{})
	root.mu.Unlock()
	return nil
}

func (c *logCapture) WithAttrs(attrs []slog.Attr) slog.Handler {
	return &logCapture{attrs: append(append([]slog.Attr{}, c.attrs...), attrs...), parent: c.root()}
}

func (c *logCapture) WithGroup(string) slog.Handler { return c }

// all returns the records so far.
func (c *logCapture) all() []record {
	root := c.root()
	root.mu.Lock()
	defer root.mu.Unlock()
	return append([]record(nil), root.records...)
}

// wait returns the first record that match accepts, waiting for it up to
// within.
func (c *logCapture) wait(t *testing.T, within time.Duration, match func(record) bool) record {
	t.Helper()
	root := c.root()
	deadline := time.After(within)
	seen := 0
	for {
		root.mu.Lock()
		recs, added := root.records[seen:], root.added
		seen = len(root.records)
		root.mu.Unlock()
		for _, r := range recs {
			if match(r) {
				return r
			}
		}
		select {
		case <-added:
		case <-deadline:
			t.Fatalf("no matching log record within %v; records: %+v", within, c.all())
			return record{}
		}
	}
}
