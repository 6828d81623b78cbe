package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/tidings-io/tidings/auth"
)

// listFlag is a repeatable, comma-separated list flag.
type listFlag struct{ v []string }

func (l *listFlag) String() string { return strings.Join(l.v, ",") }

func (l *listFlag) Set(s string) error {
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			l.v = append(l.v, p)
		}
	}
	return nil
}

func (l *listFlag) Get() any { return l.v }

// flagValue returns the value of the flag name, which the command
// declared with type T.
func flagValue[T any](fs *flag.FlagSet, name string) T {
	return fs.Lookup(name).Value.(flag.Getter).Get().(T)
}

// str returns the value of the string flag name.
func str(fs *flag.FlagSet, name string) string { return flagValue[string](fs, name) }

// list returns the values of the list flag name.
func list(fs *flag.FlagSet, name string) []string { return flagValue[[]string](fs, name) }

func runToken(ctx context.Context, e env, _ *globals, fs *flag.FlagSet, args []string) error {
	secret := str(fs, "secret")
	if secret == "" {
		secret = e.getenv("TIDINGS_JWT_KEY")
	}
	if len(args) > 0 && args[0] == "check" {
		if len(args) != 2 {
			return usagef("token check takes the token")
		}
		return checkToken(ctx, e, fs, secret, args[1])
	}
	if len(args) > 0 {
		return usagef("unexpected argument %q", args[0])
	}
	if len(secret) < auth.MinHMACKeyLen {
		return usagef("--secret (or TIDINGS_JWT_KEY) must have at least %d bytes, as the broker's -jwt-key", auth.MinHMACKeyLen)
	}
	sub := str(fs, "sub")
	if sub == "" {
		return usagef("--sub names the user")
	}
	ttl := flagValue[time.Duration](fs, "ttl")
	if ttl <= 0 {
		return usagef("--ttl must be positive")
	}
	now := time.Now()
	claims := jwt.MapClaims{"sub": sub, "iat": now.Unix(), "exp": now.Add(ttl).Unix()}
	for name, v := range map[string][]string{"subscribe": list(fs, "subscribe"), "publish": list(fs, "publish"), "channels": list(fs, "channels")} {
		if len(v) > 0 {
			claims[name] = v
		}
	}
	if info := str(fs, "info"); info != "" {
		if !json.Valid([]byte(info)) || !strings.HasPrefix(strings.TrimSpace(info), "{") {
			return usagef("--info must be a JSON object")
		}
		claims["info"] = json.RawMessage(info)
	}
	for claim, flagName := range map[string]string{"jti": "jti", "aud": "audience", "iss": "issuer"} {
		if v := str(fs, flagName); v != "" {
			claims[claim] = v
		}
	}
	tok, err := jwt.NewWithClaims(jwt.SigningMethodHS256, claims).SignedString([]byte(secret))
	if err != nil {
		return err
	}
	// What the broker will make of it, so that a mistake shows now.
	if err := verify(ctx, fs, secret, tok, nil); err != nil {
		return err
	}
	fmt.Fprintln(e.stdout, tok)
	return nil
}

// checkToken verifies tok with the broker's key settings and prints what
// it grants.
func checkToken(ctx context.Context, e env, fs *flag.FlagSet, secret, tok string) error {
	return verify(ctx, fs, secret, tok, func(c *auth.Claims) {
		fmt.Fprintf(e.stdout, "valid: sub %q, expires %s (in %v)\n", c.Subject, c.Expires.UTC().Format(time.RFC3339), time.Until(c.Expires).Round(time.Second))
		if c.TokenID != "" {
			fmt.Fprintf(e.stdout, "jti: %s\n", c.TokenID)
		}
		if len(c.Info) > 0 {
			fmt.Fprintf(e.stdout, "info: %s\n", c.Info)
		}
		if len(c.Channels) > 0 {
			fmt.Fprintf(e.stdout, "channels: %s\n", strings.Join(c.Channels, " "))
		}
		fmt.Fprintf(e.stdout, "permissions: %v\n", c.Permissions)
	})
}

// verify checks tok as a broker with these key settings would, and hands
// the claims to show.
func verify(ctx context.Context, fs *flag.FlagSet, secret, tok string, show func(*auth.Claims)) error {
	cfg := auth.Config{HMACKey: []byte(secret), JWKSURL: str(fs, "jwks-url"), Audience: str(fs, "audience"), Issuer: str(fs, "issuer")}
	if f := str(fs, "public-key-file"); f != "" {
		pem, err := os.ReadFile(f)
		if err != nil {
			return usagef("--public-key-file: %v", err)
		}
		cfg.PublicKeyPEM = pem
	}
	if secret == "" {
		cfg.HMACKey = nil
	}
	v, err := auth.New(cfg)
	if err != nil {
		return usagef("%v", err)
	}
	c, err := v.Verify(ctx, tok)
	if err != nil {
		return fmt.Errorf("the broker would refuse it: %w", err)
	}
	if show != nil {
		show(c)
	}
	return nil
}
