package redis_test

import (
	"context"
	"encoding/json"
	"regexp"
	"strconv"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/tidings-io/tidings/broker"
	"github.com/tidings-io/tidings/internal/redistest"
	"github.com/tidings-io/tidings/store/redis"
)

// commandCalls reads the call count of one command from INFO commandstats.
func commandCalls(t *testing.T, srv *redistest.Server, cmd string) int {
	t.Helper()
	info, err := srv.Client().Info(context.Background(), "commandstats").Result()
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`cmdstat_` + cmd + `:calls=(\d+)`).FindStringSubmatch(info)
	if m == nil {
		return 0
	}
	n, _ := strconv.Atoi(m[1])
	return n
}

func TestOnePublishIsOneRoundTrip(t *testing.T) {
	srv := redistest.Start(t)
	s := newStore(t, redis.Config{URL: srv.URL()})
	publish := func() {
		m := &broker.Message{ID: uuid.NewString(), Topic: "rt.topic", Time: time.Now(), Data: json.RawMessage(`1`)}
		if err := s.Publish(context.Background(), []*broker.Message{m}); err != nil {
			t.Fatal(err)
		}
	}
	publish() // loads the script
	evalsha, eval := commandCalls(t, srv, "evalsha"), commandCalls(t, srv, "eval")
	const n = 100
	for i := 0; i < n; i++ {
		publish()
	}
	if d := commandCalls(t, srv, "evalsha") - evalsha; d != n {
		t.Fatalf("%d publishes ran EVALSHA %d times, want once each", n, d)
	}
	if d := commandCalls(t, srv, "eval") - eval; d != 0 {
		t.Fatalf("%d publishes fell back to EVAL %d times", n, d)
	}
}

func TestScriptCacheLossFallsBackToEval(t *testing.T) {
	srv := redistest.Start(t)
	s := newStore(t, redis.Config{URL: srv.URL()})
	m := func() []*broker.Message {
		return []*broker.Message{{ID: uuid.NewString(), Topic: "rt.flush", Time: time.Now(), Data: json.RawMessage(`1`)}}
	}
	if err := s.Publish(context.Background(), m()); err != nil {
		t.Fatal(err)
	}
	if err := srv.Client().ScriptFlush(context.Background()).Err(); err != nil {
		t.Fatal(err)
	}
	msgs := m()
	if err := s.Publish(context.Background(), msgs); err != nil {
		t.Fatalf("publish after SCRIPT FLUSH: %v", err)
	}
	if msgs[0].Offset != 2 {
		t.Fatalf("offset after SCRIPT FLUSH = %d, want 2", msgs[0].Offset)
	}
}
