// Package demo is the in-process publisher behind the live demo page: it
// ticks random-walk prices on demo.prices.<pair> and now and then posts a
// line on demo.chat, through the broker's Publish, so that /demo shows live
// data on a fresh node with no other setup.
package demo

import (
	"context"
	"encoding/json"
	"errors"
	"math"
	"math/rand/v2"
	"strconv"
	"time"

	"github.com/tidings-io/tidings/broker"
)

// DefaultInterval is the tick interval Run uses when given none.
const DefaultInterval = time.Second

// Topics the publisher writes to.
const (
	// PricesPrefix starts every price topic: demo.prices.<pair>, e.g.
	// demo.prices.eur-usd.
	PricesPrefix = "demo.prices."
	// ChatTopic carries the chat lines.
	ChatTopic = "demo.chat"
)

// ErrNoBroker is returned by Run when it is given no broker.
var ErrNoBroker = errors.New("demo: no broker")

// instrument is one ticking pair.
type instrument struct {
	slug     string  // topic segment
	pair     string  // display name
	open     float64 // price at start, the walk's anchor
	decimals int
	vol      float64 // standard deviation of one tick's relative move
}

func instruments() []instrument {
	return []instrument{
		{"eur-usd", "EUR/USD", 1.0842, 5, 0.00018},
		{"gbp-usd", "GBP/USD", 1.2710, 5, 0.0002},
		{"usd-jpy", "USD/JPY", 151.32, 3, 0.0002},
		{"btc-usd", "BTC/USD", 64250, 2, 0.0012},
		{"eth-usd", "ETH/USD", 3120.5, 2, 0.0015},
		{"xau-usd", "XAU/USD", 2330.4, 2, 0.0004},
	}
}

var chatLines = []struct{ user, text string }{
	{"ada", "EUR/USD holding above the open, nice and steady."},
	{"grace", "Anyone else watching BTC? Lively this morning."},
	{"linus", "Dropped my connection on purpose: no gaps in the offsets after the resume."},
	{"ken", "Gold ticking up again."},
	{"barbara", "The board keeps up fine with six topics on one wildcard."},
	{"ada", "Reminder: since only works on exact topics, so the page follows each one it finds."},
	{"grace", "USD/JPY barely moved in the last minute."},
	{"linus", "ETH and BTC moving together, as usual."},
	{"ken", "Tried the drop button three times, the backoff grows each time."},
	{"barbara", "Offsets are per topic, so the chat has its own sequence."},
}

// state is the publisher's walk; it is used by Run's goroutine only.
type state struct {
	rng    *rand.Rand
	insts  []instrument
	prices []float64
	ticks  int
}

func newState(seed uint64) *state {
	s := &state{rng: rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)), insts: instruments()}
	s.prices = make([]float64, len(s.insts))
	for i, in := range s.insts {
		s.prices[i] = in.open
	}
	return s
}

// tick advances the walk and returns the publications of one tick: every
// pair on the first tick, then each pair with probability 0.7, and a chat
// line about every fourth tick.
func (s *state) tick() []broker.Publication {
	var pubs []broker.Publication
	for i, in := range s.insts {
		if s.ticks > 0 && s.rng.Float64() >= 0.7 {
			continue
		}
		p := s.prices[i]
		// A small random step, pulled back towards the open so the walk
		// stays in a believable band.
		p *= 1 + s.rng.NormFloat64()*in.vol
		p += (in.open - p) * 0.02
		scale := math.Pow10(in.decimals)
		p = math.Round(p*scale) / scale
		s.prices[i] = p
		pubs = append(pubs, broker.Publication{Topic: PricesPrefix + in.slug, Data: priceData(in, p)})
	}
	if s.ticks%4 == 3 && s.rng.Float64() < 0.9 {
		line := chatLines[s.rng.IntN(len(chatLines))]
		data, _ := json.Marshal(map[string]string{"user": line.user, "text": line.text})
		pubs = append(pubs, broker.Publication{Topic: ChatTopic, Data: data})
	}
	s.ticks++
	return pubs
}

// priceData is {"pair":…,"price":…,"open":…,"decimals":…}, with prices
// written with the pair's decimals.
func priceData(in instrument, p float64) json.RawMessage {
	b := []byte(`{"pair":`)
	b = strconv.AppendQuote(b, in.pair)
	b = append(b, `,"price":`...)
	b = strconv.AppendFloat(b, p, 'f', in.decimals, 64)
	b = append(b, `,"open":`...)
	b = strconv.AppendFloat(b, in.open, 'f', in.decimals, 64)
	b = append(b, `,"decimals":`...)
	b = strconv.AppendInt(b, int64(in.decimals), 10)
	return append(b, '}')
}

// Run publishes the demo feed through b every interval (DefaultInterval
// when every <= 0) until ctx is done, then returns nil. It runs in the
// caller's goroutine and starts none: the caller owns it, e.g.
//
//	done := make(chan struct{})
//	go func() { defer close(done); _ = demo.Run(ctx, b, time.Second) }()
//	…
//	cancel(); <-done // before the store closes
//
// A publish that fails (the store is unreachable, the node is shutting
// down) is skipped; the next tick tries again.
func Run(ctx context.Context, b *broker.Broker, every time.Duration) error {
	if b == nil {
		return ErrNoBroker
	}
	if every <= 0 {
		every = DefaultInterval
	}
	s := newState(uint64(time.Now().UnixNano()))
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		if pubs := s.tick(); len(pubs) > 0 {
			pctx, cancel := context.WithTimeout(ctx, every+time.Second)
			_, _ = b.Publish(pctx, pubs)
			cancel()
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}
