package broker

import (
	"strings"
	"unicode/utf8"

	"github.com/tidings-io/tidings/protocol"
)

// ErrInvalidTopic is the error, wrapped with a short detail, that
// ValidateTopic and ValidatePattern return for a topic or pattern that breaks
// the rules of PROTOCOL.md ("Topics"). Test for it with errors.Is.
var ErrInvalidTopic = &Error{Code: protocol.CodeBadRequest, Message: "topic is invalid"}

// maxTopicLen is the longest topic or pattern, in bytes.
const maxTopicLen = 255

// ValidateTopic reports whether topic is a valid exact topic, the kind that
// can be published to: 1–255 bytes of segments of [A-Za-z0-9_:-] joined by
// '.', with no empty segment and no wildcard.
//
// It returns nil or an error wrapping ErrInvalidTopic. The error's detail
// never repeats the input beyond a single offending character, so it is safe
// to send back to a client. ValidateTopic does not allocate when topic is
// valid.
func ValidateTopic(topic string) error {
	_, err := scanTopic(topic, false)
	return err
}

// ValidatePattern reports whether pattern is a valid subscription pattern:
// the rules of ValidateTopic, except that a segment may be exactly "*", which
// matches one segment, or, as the last segment only, exactly ">", which
// matches one or more trailing segments (NATS semantics). "a.*.c", "a.>",
// "*" and ">" are valid; "a.*b", "a.>.b" and "a>" are not.
//
// wildcard reports whether a valid pattern contains "*" or ">"; a valid
// pattern without a wildcard is a valid exact topic. The error wraps
// ErrInvalidTopic, as for ValidateTopic. ValidatePattern does not allocate
// when pattern is valid.
func ValidatePattern(pattern string) (wildcard bool, err error) {
	return scanTopic(pattern, true)
}

// ErrInvalidIdempotencyKey is wrapped by ValidateIdempotencyKey's errors.
var ErrInvalidIdempotencyKey = &Error{Code: protocol.CodeBadRequest, Message: "idempotency key is invalid"}

// MaxIdempotencyKeyLen is the longest idempotency key, in bytes.
const MaxIdempotencyKeyLen = 128

// ValidateIdempotencyKey reports whether key may be used as an idempotency
// key: empty (none), or 1–128 printable ASCII bytes (0x21–0x7e). The error
// wraps ErrInvalidIdempotencyKey and never repeats the key.
func ValidateIdempotencyKey(key string) error {
	if len(key) > MaxIdempotencyKeyLen {
		return NewError(ErrInvalidIdempotencyKey, "idempotency key is invalid: longer than %d bytes", MaxIdempotencyKeyLen)
	}
	for i := 0; i < len(key); i++ {
		if key[i] < 0x21 || key[i] > 0x7e {
			return NewError(ErrInvalidIdempotencyKey, "idempotency key is invalid: byte %d is not printable ASCII", i)
		}
	}
	return nil
}

// IsPattern reports whether s holds a wildcard ("*" or ">"); for a valid
// pattern it says whether the pattern is a wildcard pattern rather than an
// exact topic.
func IsPattern(s string) bool { return strings.ContainsAny(s, "*>") }

// scanTopic validates s as an exact topic or, if wild is true, as a pattern.
// It makes one pass over the bytes of s and allocates only to build an error.
func scanTopic(s string, wild bool) (hasWildcard bool, err error) {
	if len(s) == 0 {
		return false, NewError(ErrInvalidTopic, "topic is invalid: empty")
	}
	if len(s) > maxTopicLen {
		return false, NewError(ErrInvalidTopic, "topic is invalid: longer than %d bytes", maxTopicLen)
	}
	start := 0 // index of the first byte of the current segment
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case isSegmentByte(c):
		case c == '.':
			if i == start {
				return false, NewError(ErrInvalidTopic, "topic is invalid: empty segment at byte %d", i)
			}
			start = i + 1
		case c == '*' || c == '>':
			if !wild {
				return false, NewError(ErrInvalidTopic, "topic is invalid: wildcards are not allowed here")
			}
			if i != start || (i+1 < len(s) && s[i+1] != '.') {
				return false, NewError(ErrInvalidTopic, "topic is invalid: wildcard %q must be a whole segment", c)
			}
			if c == '>' && i+1 != len(s) {
				return false, NewError(ErrInvalidTopic, "topic is invalid: wildcard '>' must be the last segment")
			}
			hasWildcard = true
		default:
			return false, invalidChar(s, i)
		}
	}
	if start == len(s) { // trailing '.'
		return false, NewError(ErrInvalidTopic, "topic is invalid: empty segment at byte %d", len(s))
	}
	return hasWildcard, nil
}

// isSegmentByte reports whether c may appear in a literal segment.
func isSegmentByte(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' ||
		c == '_' || c == ':' || c == '-'
}

// invalidChar describes the bad character at s[i], quoting only that one
// character (or byte, if s is not valid UTF-8 there).
func invalidChar(s string, i int) error {
	r, size := utf8.DecodeRuneInString(s[i:])
	if r == utf8.RuneError && size <= 1 {
		return NewError(ErrInvalidTopic, "topic is invalid: invalid byte 0x%02x at byte %d", s[i], i)
	}
	return NewError(ErrInvalidTopic, "topic is invalid: invalid character %q at byte %d", r, i)
}

// Match reports whether topic, a valid exact topic, matches pattern, a
// valid pattern: `*` matches one segment, `>` one or more trailing ones.
func Match(pattern, topic string) bool {
	for {
		pseg, prest, pmore := nextSegment(pattern)
		if pseg == ">" {
			return true
		}
		tseg, trest, tmore := nextSegment(topic)
		if pseg != "*" && pseg != tseg {
			return false
		}
		if !pmore || !tmore {
			return pmore == tmore
		}
		pattern, topic = prest, trest
	}
}
