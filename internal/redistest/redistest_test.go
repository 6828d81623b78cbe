package redistest

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// ping pings with opt and returns the error.
func ping(opt *redis.Options) error {
	opt.MaxRetries, opt.DialTimeout = -1, 2*time.Second
	c := redis.NewClient(opt)
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return c.Ping(ctx).Err()
}

// TestServerOptions: each option is in force: the server answers its
// own Options and refuses a client without the credentials or the
// certificates it wants.
func TestServerOptions(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name    string
		opts    Options
		without func(*redis.Options) // takes away what the server wants
		want    string               // in the error of a client without it
	}{
		{"password", Options{Password: "pw"}, func(o *redis.Options) { o.Password = "" }, "NOAUTH"},
		{"ACL user, default off", Options{Username: "alice", Password: "secret"}, func(o *redis.Options) { o.Username, o.Password = "", "" }, "NOAUTH"},
		{"ACL user, wrong password", Options{Username: "alice", Password: "secret"}, func(o *redis.Options) { o.Password = "guess" }, "WRONGPASS"},
		{"TLS only", Options{TLS: true}, func(o *redis.Options) { o.TLSConfig.RootCAs = nil }, "certificate"},
		{"TLS client certificate", Options{TLS: true, TLSAuthClients: "yes"}, func(o *redis.Options) { o.TLSConfig.Certificates = nil }, "certificate required"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s := StartWith(t, tc.opts)
			if err := ping(s.Options()); err != nil {
				t.Fatalf("ping with the server's options: %v", err)
			}
			opt := s.Options()
			tc.without(opt)
			if err := ping(opt); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("ping without: %v, want an error with %q", err, tc.want)
			}
		})
	}
}

// TestTLSServerHasNoPlainPort: a TLS server does not speak plain text.
func TestTLSServerHasNoPlainPort(t *testing.T) {
	t.Parallel()
	s := StartWith(t, Options{TLS: true})
	if !strings.HasPrefix(s.URL(), "rediss://") {
		t.Errorf("URL %q, want rediss://", s.URL())
	}
	opt := s.Options()
	opt.TLSConfig = nil
	opt.ReadTimeout = time.Second
	if err := ping(opt); err == nil {
		t.Error("plain-text ping answered")
	}
}

// TestSentinelPassword: the sentinel wants its own password and reaches
// a master that wants another.
func TestSentinelPassword(t *testing.T) {
	t.Parallel()
	master := StartWith(t, Options{Username: "alice", Password: "secret"})
	sentinel := StartSentinelWith(t, master, SentinelOptions{Password: "sentinel-pass"})
	if err := ping(&redis.Options{Addr: sentinel.Addr()}); err == nil || !strings.Contains(err.Error(), "NOAUTH") {
		t.Errorf("ping of the sentinel without its password: %v, want NOAUTH", err)
	}
	c := redis.NewFailoverClient(&redis.FailoverOptions{MasterName: "mymaster", SentinelAddrs: []string{sentinel.Addr()},
		SentinelPassword: "sentinel-pass", Username: "alice", Password: "secret"})
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := c.Set(ctx, "k", "v", 0).Err(); err != nil {
		t.Fatalf("SET through the sentinel: %v", err)
	}
}

// TestClusterWithPassword: a cluster whose nodes want a password forms
// and answers a client that gives it.
func TestClusterWithPassword(t *testing.T) {
	t.Parallel()
	cl := StartClusterWith(t, Options{Password: "cluster-pass"})
	c := redis.NewClusterClient(cl.ClusterOptions())
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, k := range []string{"a", "b", "c", "d"} {
		if err := c.Set(ctx, k, "v", 0).Err(); err != nil {
			t.Fatalf("SET %s: %v", k, err)
		}
	}
	if _, err := cl.MasterOf("a"); err != nil {
		t.Errorf("MasterOf: %v", err)
	}
}
