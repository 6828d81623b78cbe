package redis

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	goredis "github.com/redis/go-redis/v9"
)

// go-redis writes its own log lines (a dial that fails while the pool
// reconnects, a sentinel that cannot be reached, …) through one logger for
// the whole process, which redis.SetLogger replaces; by default it prints
// them as plain lines on stderr. The first New installs goRedisLogger
// there instead: from then on each line becomes a structured record
// ("go-redis", with the line as "detail"), with addresses and credentials
// redacted, on the Logger of every open store (a process has one store as
// a rule) or, while none is open, on that of the store closed last. A line
// repeated within repeatWindow is counted ("repeated" on its next record),
// not logged again.

// repeatWindow is how long the same go-redis line is logged only once on
// a logger.
const repeatWindow = 10 * time.Second

// goRedisLog is the state behind goRedisLogger.
var goRedisLog struct {
	install sync.Once

	// mu guards sinks, fallback and the sinks' seen maps.
	mu    sync.Mutex
	sinks []*goRedisSink // one per open store, oldest first
	// fallback receives the lines while no store is open: the sink of the
	// store closed last (go-redis may still log while its connections
	// wind down), else slog.Default.
	fallback *goRedisSink
}

// goRedisSink is where go-redis's lines go: a logger, the redactor of its
// store's secrets, and the lines it logged within repeatWindow.
type goRedisSink struct {
	store *Store
	log   *slog.Logger
	red   *redactor
	seen  map[string]repeat
}

// repeat is when a line was last logged, and how often it came since.
type repeat struct {
	at         time.Time
	suppressed int
}

// goRedisLogger is go-redis's logger (its internal.Logging interface).
type goRedisLogger struct{}

// installGoRedisLogger makes go-redis log through goRedisLogger.
func installGoRedisLogger() {
	goRedisLog.install.Do(func() { goredis.SetLogger(goRedisLogger{}) })
}

// logGoRedisTo adds s to the stores that receive go-redis's lines.
func logGoRedisTo(s *Store) {
	installGoRedisLogger()
	goRedisLog.mu.Lock()
	defer goRedisLog.mu.Unlock()
	goRedisLog.sinks = append(goRedisLog.sinks, &goRedisSink{store: s, log: s.log, red: s.red})
}

// stopLoggingGoRedisTo removes s from the stores that receive go-redis's
// lines.
func stopLoggingGoRedisTo(s *Store) {
	goRedisLog.mu.Lock()
	defer goRedisLog.mu.Unlock()
	for i, k := range goRedisLog.sinks {
		if k.store == s {
			goRedisLog.sinks = slices.Delete(goRedisLog.sinks, i, i+1)
			if len(goRedisLog.sinks) == 0 {
				goRedisLog.fallback = k
			}
			return
		}
	}
}

// Printf logs one go-redis line on every sink.
func (goRedisLogger) Printf(ctx context.Context, format string, v ...any) {
	if ctx == nil {
		ctx = context.Background()
	}
	line := strings.TrimSpace(fmt.Sprintf(format, v...))
	level := lineLevel(line)
	now := time.Now()
	type entry struct {
		log      *slog.Logger
		text     string
		repeated int
	}
	var out []entry
	goRedisLog.mu.Lock()
	sinks := goRedisLog.sinks
	if len(sinks) == 0 {
		if goRedisLog.fallback == nil {
			goRedisLog.fallback = &goRedisSink{log: slog.Default(), red: &redactor{}}
		}
		sinks = []*goRedisSink{goRedisLog.fallback}
	}
	for _, k := range sinks {
		text := k.red.text(line)
		r, ok := k.seen[text]
		if ok && now.Sub(r.at) < repeatWindow {
			r.suppressed++
			k.seen[text] = r
			continue
		}
		if k.seen == nil || len(k.seen) >= 256 {
			k.seen = make(map[string]repeat)
		}
		k.seen[text] = repeat{at: now}
		out = append(out, entry{log: k.log, text: text, repeated: r.suppressed})
	}
	goRedisLog.mu.Unlock()
	for _, e := range out {
		attrs := []any{"detail", e.text}
		if e.repeated > 0 {
			attrs = append(attrs, "repeated", e.repeated)
		}
		e.log.Log(ctx, level, "go-redis", attrs...)
	}
}

// lineLevel is the level of a go-redis line: warn for a failure, info
// otherwise (a sentinel naming the new master, say).
func lineLevel(line string) slog.Level {
	l := strings.ToLower(line)
	for _, w := range []string{"fail", "error", "err=", "panic", "unable", "cannot", "can't", "invalid",
		"bad", "unexpected", "refused", "timeout", "discard", "reject", "removing", "closing", "unreachable"} {
		if strings.Contains(l, w) {
			return slog.LevelWarn
		}
	}
	return slog.LevelInfo
}
