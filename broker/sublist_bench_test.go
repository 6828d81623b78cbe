package broker

import (
	"fmt"
	"testing"
)

// BenchmarkWildcardMatch matches topics against 10 000 subscriptions spread
// over shapes a broker sees: one pattern per instrument ("prices.<i>.*"), a
// few popular patterns shared by many subscribers ("prices.*.usd<i%100>"),
// and catch-alls under a prefix ("news.<i%500>.>").
func BenchmarkWildcardMatch(b *testing.B) {
	const subscriptions = 10_000
	x := newPatternIndex[int](0)
	for i := range subscriptions {
		var p string
		switch i % 3 {
		case 0:
			p = fmt.Sprintf("prices.%d.*", i)
		case 1:
			p = fmt.Sprintf("prices.*.usd%d", i%100)
		default:
			p = fmt.Sprintf("news.%d.>", i%500)
		}
		x.mustInsert(p, i)
	}
	patterns := x.len()

	for _, bc := range []struct {
		name, topic string
		patterns    int // patterns expected to match
	}{
		{"hit/prices", "prices.42.usd7", 2},     // prices.42.* and prices.*.usd7
		{"hit/news", "news.17.world.europe", 1}, // news.17.>
		{"miss/prices", "prices.none.eur", 0},   // walks the prices.* branch
		{"miss/root", "orders.eu.12345", 0},     // fails at the first segment
	} {
		n := 0
		fn := func(_ string, subs []int) { n += len(subs) }
		got := 0
		x.match(bc.topic, func(string, []int) { got++ })
		if got != bc.patterns {
			b.Fatalf("%s matches %d patterns, want %d", bc.topic, got, bc.patterns)
		}
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				x.match(bc.topic, fn)
			}
			// After the loop: b.Loop resets the timer, which drops metrics.
			b.ReportMetric(float64(patterns), "patterns")
		})
		if bc.name == "hit/prices" {
			b.Run(bc.name+"/parallel", func(b *testing.B) {
				b.ReportAllocs()
				b.RunParallel(func(pb *testing.PB) {
					for pb.Next() {
						x.match(bc.topic, func(string, []int) {})
					}
				})
			})
		}
	}
}
