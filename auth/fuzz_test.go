package auth_test

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"strconv"
	"testing"
	"time"

	"github.com/tidings-io/tidings/auth"
	"github.com/tidings-io/tidings/broker"
)

// hs256 signs payload, any bytes, as the claims of an HS256 token.
func hs256(key, payload []byte) string {
	enc := base64.RawURLEncoding.EncodeToString
	signing := enc([]byte(`{"alg":"HS256","typ":"JWT"}`)) + "." + enc(payload)
	mac := hmac.New(sha256.New, key)
	mac.Write([]byte(signing))
	return signing + "." + enc(mac.Sum(nil))
}

// FuzzClaims feeds arbitrary claims, correctly signed, to Verify. It must
// never panic, and must keep its promises: every refusal wraps
// ErrInvalidToken with a short reason, and an accepted token has an
// unexpired exp and only valid topic patterns, whose permissions agree
// with Covers and Match.
func FuzzClaims(f *testing.F) {
	exp := fixedNow.Add(time.Hour).Unix()
	for _, seed := range []string{
		`{"sub":"u1","exp":` + itoa(exp) + `,"subscribe":["prices.>"],"publish":["chat.room1"]}`,
		`{"exp":` + itoa(exp) + `}`,
		`{"exp":` + itoa(exp) + `.5,"nbf":1,"iat":1}`,
		`{"exp":"` + itoa(exp) + `"}`,
		`{"exp":1e400}`,
		`{"exp":-1}`,
		`{"exp":` + itoa(exp) + `,"subscribe":"prices.>"}`,
		`{"exp":` + itoa(exp) + `,"subscribe":[">","a.*.b","a.>.b"]}`,
		`{"exp":` + itoa(exp) + `,"subscribe":[1,null]}`,
		`{"exp":` + itoa(exp) + `,"aud":["a","b"],"iss":"x","sub":7}`,
		`{"exp":` + itoa(exp) + `,"publish":["` + string(make([]byte, 300)) + `"]}`,
		`[]`, `null`, `"x"`, ``, `{`, "{\"exp\":" + itoa(exp) + ",\"sub\":\"\xff\"}",
	} {
		f.Add([]byte(seed))
	}
	v, err := auth.New(auth.Config{HMACKey: hmacKey, Now: now})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, payload []byte) {
		c, err := v.Verify(context.Background(), hs256(hmacKey, payload))
		if err != nil {
			if !errors.Is(err, auth.ErrInvalidToken) {
				t.Fatalf("%q: error %v does not wrap ErrInvalidToken", payload, err)
			}
			if len(err.Error()) > 200 {
				t.Fatalf("%q: reason of %d bytes, want a short one: %q", payload, len(err.Error()), err)
			}
			return
		}
		if c.Expires.IsZero() || !c.Expires.Add(v.Leeway()).After(fixedNow) {
			t.Fatalf("%q: accepted with exp %v at %v", payload, c.Expires, fixedNow)
		}
		sub, pub := c.Permissions.Subscribe(), c.Permissions.Publish()
		for _, p := range append(append([]string(nil), sub...), pub...) {
			if _, err := broker.ValidatePattern(p); err != nil {
				t.Fatalf("%q: accepted an invalid pattern %q: %v", payload, p, err)
			}
		}
		for _, p := range sub {
			if !c.Permissions.AllowSubscribe(p) {
				t.Fatalf("%q: subscribe pattern %q does not cover itself", payload, p)
			}
		}
		for _, p := range pub {
			if w, _ := broker.ValidatePattern(p); !w && !c.Permissions.AllowPublish(p) {
				t.Fatalf("%q: publish topic %q is not allowed by itself", payload, p)
			}
		}
	})
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }
