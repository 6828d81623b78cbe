package redis

// The reads of history: a topic's position, resume and recent messages.

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	goredis "github.com/redis/go-redis/v9"
	"github.com/tidings-io/tidings/broker"
)

// Position returns the topic's position, creating its epoch if needed.
func (s *Store) Position(ctx context.Context, topic string) (broker.Position, error) {
	pos, _, err := s.since(ctx, topic, "", 0)
	return pos, s.red.err(err)
}

// Since returns history after since.Offset when since.Epoch is current and
// history still reaches since.Offset+1 within the topic's last history
// size messages younger than its history TTL.
func (s *Store) Since(ctx context.Context, topic string, since broker.Position) ([]*broker.Message, broker.Position, bool, error) {
	pos, entries, err := s.since(ctx, topic, since.Epoch, since.Offset)
	if err != nil {
		return nil, pos, false, s.red.err(err)
	}
	if since.Epoch != pos.Epoch || since.Offset > pos.Offset {
		return nil, pos, false, nil
	}
	if since.Offset == pos.Offset {
		return nil, pos, true, nil
	}
	// History is bounded to the topic's last size messages (the stream
	// is trimmed approximately, so the bound is applied here).
	size, ttl := s.history(topic)
	if pos.Offset-since.Offset > uint64(size) {
		return nil, pos, false, nil
	}
	cutoff := time.Now().Add(-ttl)
	msgs := make([]*broker.Message, 0, len(entries))
	next := since.Offset + 1
	for _, e := range entries {
		m, err := decodeEntry(e, pos.Epoch)
		if err != nil {
			return nil, pos, false, err
		}
		if m.Offset != next || !m.Time.After(cutoff) {
			return nil, pos, false, nil
		}
		msgs = append(msgs, m)
		next++
	}
	if next != pos.Offset+1 {
		return nil, pos, false, nil
	}
	return msgs, pos, true, nil
}

// Recent returns at most limit of the topic's last messages still in
// history (its last history size messages younger than its TTL), in
// offset order, and its current position.
func (s *Store) Recent(ctx context.Context, topic string, limit int) ([]*broker.Message, broker.Position, error) {
	pos, _, err := s.since(ctx, topic, "", 0)
	if err != nil {
		return nil, pos, s.red.err(err)
	}
	size, ttl := s.history(topic)
	limit = min(limit, size)
	if limit <= 0 || pos.Offset == 0 {
		return nil, pos, nil
	}
	ctx, cancel := context.WithTimeout(ctx, s.cfg.Timeout)
	defer cancel()
	entries, err := s.client.XRevRangeN(ctx, s.keys(topic)[1], "+", "-", int64(limit)).Result()
	if err != nil {
		return nil, pos, s.red.err(fmt.Errorf("redis: reading history: %w", err))
	}
	cutoff := time.Now().Add(-ttl)
	msgs := make([]*broker.Message, 0, len(entries))
	for i := len(entries) - 1; i >= 0; i-- {
		m, err := decodeEntry(entries[i], pos.Epoch)
		if err != nil {
			return nil, pos, err
		}
		// A message published meanwhile is past pos: left for the next read.
		if m.Offset+uint64(size) <= pos.Offset || m.Offset > pos.Offset || !m.Time.After(cutoff) {
			continue
		}
		msgs = append(msgs, m)
	}
	return msgs, pos, nil
}

// since runs the since script: the position, and the entries after offset
// when epoch is current.
func (s *Store) since(ctx context.Context, topic, epoch string, offset uint64) (broker.Position, []goredis.XMessage, error) {
	if s.closed.Load() {
		return broker.Position{}, nil, ErrClosed
	}
	ctx, cancel := context.WithTimeout(ctx, s.cfg.Timeout)
	defer cancel()
	start := time.Now()
	_, ttl := s.history(topic)
	res, err := sinceScript.Run(ctx, s.client, s.keys(topic), newEpoch(), ms(s.metaTTL(ttl)), epoch, offset).Slice()
	if err == nil {
		s.tel.observe(ctx, start, s.tel.opSince)
	}
	if err != nil {
		return broker.Position{}, nil, fmt.Errorf("redis: reading position: %w", err)
	}
	pos := broker.Position{}
	pos.Offset, pos.Epoch, err = position(res)
	if err != nil {
		return pos, nil, err
	}
	raw, _ := res[2].([]any)
	entries := make([]goredis.XMessage, 0, len(raw))
	for _, r := range raw {
		e, ok := r.([]any)
		if len(e) != 2 || !ok {
			return pos, nil, errEnvelope
		}
		id, _ := e[0].(string)
		fields, _ := e[1].([]any)
		if len(fields) != 2 {
			return pos, nil, errEnvelope
		}
		body, _ := fields[1].(string)
		entries = append(entries, goredis.XMessage{ID: id, Values: map[string]any{"m": body}})
	}
	return pos, entries, nil
}

// position reads the {offset, epoch, …} head of a script result.
func position(res []any) (uint64, string, error) {
	if len(res) < 2 {
		return 0, "", errEnvelope
	}
	off, ok1 := res[0].(int64)
	epoch, ok2 := res[1].(string)
	if !ok1 || !ok2 || off < 0 || epoch == "" {
		return 0, "", errEnvelope
	}
	return uint64(off), epoch, nil
}

// decodeEntry reads a history stream entry.
func decodeEntry(e goredis.XMessage, epoch string) (*broker.Message, error) {
	idOffset, _, _ := strings.Cut(e.ID, "-")
	off, err := strconv.ParseUint(idOffset, 10, 64)
	if err != nil {
		return nil, errEnvelope
	}
	body, _ := e.Values["m"].(string)
	return decodeBody(body, off, epoch)
}

// glob returns the pub/sub glob that covers pattern's channels: `*` and
