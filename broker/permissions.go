package broker

import (
	"sort"
)

// Permissions decide which topics a session or a publisher may use. A nil
// Permissions allows everything.
type Permissions interface {
	// AllowSubscribe reports whether every topic pattern (a valid exact
	// topic or wildcard pattern) can match is allowed.
	AllowSubscribe(pattern string) bool
	// AllowPublish reports whether publishing to topic, a valid exact
	// topic, is allowed.
	AllowPublish(topic string) bool
}

// CheckPublish returns nil when perms allow publishing every message of
// pubs. A message with an invalid topic gets the validation error that
// Publish would return, so that a bad request is not reported as
// forbidden; one out of scope gets an error wrapping ErrForbidden.
func CheckPublish(perms Permissions, pubs []Publication) error {
	if perms == nil {
		return nil
	}
	for i, p := range pubs {
		if err := ValidateTopic(p.Topic); err != nil {
			return inMessage(i, err)
		}
		if !perms.AllowPublish(p.Topic) {
			return NewError(ErrForbidden, "forbidden: may not publish to %s", p.Topic)
		}
	}
	return nil
}

// SetPermissions replaces the session's permissions (nil allows
// everything). Subscriptions the new permissions no longer allow are
// removed; their patterns are returned so that the transport can tell the
// client. Nothing is delivered on them once SetPermissions returns.
func (s *Session) SetPermissions(perms Permissions) (revoked []string) {
	var drop []*subscription
	s.mu.Lock()
	s.perms = perms
	if perms != nil {
		for pattern, sub := range s.subs {
			if !perms.AllowSubscribe(pattern) {
				delete(s.subs, pattern)
				drop = append(drop, sub)
				revoked = append(revoked, pattern)
			}
		}
	}
	s.mu.Unlock()
	for _, sub := range drop {
		s.b.remove(sub)
	}
	sort.Strings(revoked)
	return revoked
}
