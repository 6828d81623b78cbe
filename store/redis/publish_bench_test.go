package redis_test

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/tidings-io/tidings/broker"
	"github.com/tidings-io/tidings/internal/redistest"
	"github.com/tidings-io/tidings/store/redis"
)

// BenchmarkPublishBatch stores batches of N 100-byte messages over 5
// topics on one Redis: msgs/s is what one publisher gets.
func BenchmarkPublishBatch(b *testing.B) {
	srv := redistest.Start(b)
	s, err := redis.New(redis.Config{URL: srv.URL()})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = s.Close() })
	ctx := context.Background()
	data := json.RawMessage(`"` + strings.Repeat("x", 98) + `"`)
	for _, n := range []int{1, 50} {
		b.Run(fmt.Sprintf("batch=%d", n), func(b *testing.B) {
			msgs := make([]*broker.Message, n)
			b.ReportAllocs()
			for b.Loop() {
				for i := range msgs {
					msgs[i] = &broker.Message{ID: uuid.NewString(), Topic: fmt.Sprintf("bench.%d", i%5), Time: time.Now(), Data: data}
				}
				if err := s.Publish(ctx, msgs); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.N*n)/b.Elapsed().Seconds(), "msgs/s")
		})
	}
}
