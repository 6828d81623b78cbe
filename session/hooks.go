package session

import (
	"context"
	"encoding/json"
	"errors"

	"github.com/tidings-io/tidings/auth"
	"github.com/tidings-io/tidings/broker"
	"github.com/tidings-io/tidings/hooks"
)

// hook asks the backend's kind hook about topic (and data), when the hook
// is on and applies to topic; asked reports whether it was asked. A
// refusal is the backend's *broker.Error; a backend that failed is an
// error wrapping broker.ErrUnavailable.
func (s *Session) hook(ctx context.Context, kind hooks.Kind, topic string, data json.RawMessage, claims *auth.Claims) (a hooks.Answer, asked bool, err error) {
	if !s.cfg.Hooks.Enabled(kind) || (s.cfg.HookApplies != nil && !s.cfg.HookApplies(kind.String(), topic)) {
		return hooks.Answer{}, false, nil
	}
	if claims == nil {
		s.mu.Lock()
		claims = s.info.Claims
		s.mu.Unlock()
	}
	a, err = s.cfg.Hooks.Call(ctx, kind, hooks.Request{
		Session: s.info.ID, Remote: s.info.Remote, User: s.info.Subject, Info: s.info.UserInfo,
		Claims: hooks.ClaimsOf(claims), Headers: s.info.Headers, Cookies: s.info.Cookies, Topic: topic, Data: data,
	})
	return a, true, err
}

// hookRefused answers a command the backend refused, or could not be
// asked about (logged), and reports whether it did.
func (s *Session) hookRefused(ref string, kind hooks.Kind, err error) bool {
	if err == nil {
		return false
	}
	if errors.Is(err, broker.ErrUnavailable) {
		s.info.Log().Warn("backend hook failed", "hook", kind.String(), "err", err)
	}
	s.replyError(ref, err)
	return true
}
