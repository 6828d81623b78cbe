package redis

import (
	"errors"
	"net"
	"net/url"
	"regexp"
	"slices"
	"strings"
)

// redacted replaces what the store's errors and logs must not show.
const redacted = "[redacted]"

// Network addresses as go-redis and the net package write them in errors
// and logs: URLs, IP addresses with or without a port, host:port.
var addrPatterns = []*regexp.Regexp{
	regexp.MustCompile(`(?i)\b(?:rediss?|unix)://[^\s"'\x60]*`),
	regexp.MustCompile(`\[[0-9A-Za-z:.%_-]*:[0-9A-Za-z:.%_-]*\](?::\d{1,5})?`),
	regexp.MustCompile(`\b\d{1,3}(?:\.\d{1,3}){3}(?::\d{1,5})?\b`),
	regexp.MustCompile(`(?:[0-9A-Fa-f]{0,4}:){2,7}[0-9A-Fa-f]{1,4}\b`),
	regexp.MustCompile(`\b[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?:\d{1,5}\b`),
}

// Host names in the errors of a certificate for the wrong name.
var certNamePatterns = []struct {
	re   *regexp.Regexp
	repl string
}{
	{regexp.MustCompile(`(certificate is valid for ).*?(, not )\S+`), "${1}" + redacted + "${2}" + redacted},
	{regexp.MustCompile(`(wanted to match )\S+`), "${1}" + redacted},
	{regexp.MustCompile(`(cannot validate certificate for )\S+`), "${1}" + redacted},
}

// redactor takes Redis addresses, usernames and passwords out of text:
// what the store's errors and log records say never names the servers it
// reaches or the credentials it gives.
type redactor struct {
	// secrets are replaced wherever they appear: passwords, and a URL's
	// user information.
	secrets []string
	// words are replaced where they stand as whole words: usernames and
	// configured host names, which an error may quote without a port.
	words []*regexp.Regexp
}

// newRedactor returns the redactor of cfg's secrets and hosts.
func newRedactor(cfg Config) *redactor {
	r := &redactor{}
	secret := func(v string) {
		if v != "" && !slices.Contains(r.secrets, v) {
			r.secrets = append(r.secrets, v)
		}
	}
	word := func(v string) {
		if v == "" || v == "default" {
			return
		}
		q := regexp.QuoteMeta(v)
		if isWordChar(v[0]) {
			q = `\b` + q
		}
		if isWordChar(v[len(v)-1]) {
			q += `\b`
		}
		r.words = append(r.words, regexp.MustCompile(q))
	}
	secret(cfg.Password)
	secret(cfg.SentinelPassword)
	word(cfg.Username)
	word(cfg.SentinelUsername)
	hosts := append(slices.Clone(cfg.ClusterAddrs), cfg.SentinelAddrs...)
	if cfg.TLS != nil {
		hosts = append(hosts, cfg.TLS.ServerName)
	}
	if cfg.URL != "" {
		// The user information by hand: url.Parse may refuse the URL.
		if _, rest, ok := strings.Cut(cfg.URL, "://"); ok {
			if at := strings.LastIndex(rest, "@"); at >= 0 {
				info := rest[:at]
				secret(info)
				user, pass, _ := strings.Cut(info, ":")
				secret(pass)
				word(user)
				if u, err := url.PathUnescape(pass); err == nil {
					secret(u)
				}
			}
		}
		if u, err := url.Parse(cfg.URL); err == nil {
			hosts = append(hosts, u.Host)
			if p, ok := u.User.Password(); ok {
				secret(p)
			}
			word(u.User.Username())
		}
	}
	for _, h := range hosts {
		if host, _, err := net.SplitHostPort(h); err == nil {
			h = host
		}
		if net.ParseIP(h) == nil { // addresses are caught by addrPatterns
			word(h)
		}
	}
	// The longest first, so that no secret is left half replaced.
	slices.SortFunc(r.secrets, func(a, b string) int { return len(b) - len(a) })
	return r
}

func isWordChar(c byte) bool {
	return c == '_' || '0' <= c && c <= '9' || 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z'
}

// text returns s without the secrets, configured names and addresses.
func (r *redactor) text(s string) string {
	for _, v := range r.secrets {
		s = strings.ReplaceAll(s, v, redacted)
	}
	for _, re := range r.words {
		s = re.ReplaceAllLiteralString(s, redacted)
	}
	for _, p := range certNamePatterns {
		s = p.re.ReplaceAllString(s, p.repl)
	}
	for _, re := range addrPatterns {
		s = re.ReplaceAllLiteralString(s, redacted)
	}
	return s
}

// err returns err with a redacted text; errors.Is still sees what err
// wraps. Nil, ErrClosed and errors already redacted are returned as they
// are.
func (r *redactor) err(err error) error {
	if _, done := err.(*redactedError); done || err == nil || err == ErrClosed {
		return err
	}
	return &redactedError{msg: r.text(err.Error()), err: err}
}

// wrap returns kind: err, err redacted; errors.Is sees kind and what err
// wraps.
func (r *redactor) wrap(kind, err error) error {
	return &redactedError{msg: kind.Error() + ": " + r.text(err.Error()), err: err, kind: kind}
}

// redactedError is an error whose text has been redacted. It has no
// Unwrap, so that nothing reaches the original text; Is matches what the
// original wraps.
type redactedError struct {
	msg  string
	err  error
	kind error // an error of this package it is one of, or nil
}

func (e *redactedError) Error() string { return e.msg }

// Is reports whether the original error, or kind, matches target.
func (e *redactedError) Is(target error) bool {
	return (e.kind != nil && errors.Is(e.kind, target)) || errors.Is(e.err, target)
}
