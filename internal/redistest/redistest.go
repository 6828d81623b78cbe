// Package redistest starts real redis-server processes for tests: a single
// server on a free loopback port that a test may kill and restart, a
// three-master Redis Cluster built with redis-cli, and a Redis Sentinel.
// A server may require a password or an ACL user and serve TLS only
// (Options). It never touches the server on 6379 and kills only the
// processes it started.
package redistest

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/tidings-io/tidings/internal/testcert"
)

// Options configure a server beyond the defaults (no authentication, no
// TLS).
type Options struct {
	// Password is what clients authenticate with: requirepass, or the
	// password of the ACL user Username when that is set.
	Password string
	// Username, when set, adds the ACL user "Username on >Password ~* &*
	// +@all" and turns the default user off: only that user may connect.
	Username string
	// TLS serves TLS only, on the server's port (no plain-text port), with
	// a certificate of a fresh test CA (Server.CA) for 127.0.0.1 and
	// localhost.
	TLS bool
	// TLSAuthClients is tls-auth-clients with TLS: "no" (the default),
	// "optional" (a client certificate, when given, must be valid) or
	// "yes" (a client must present a certificate the CA signed).
	TLSAuthClients string
	// Args are more redis-server arguments.
	Args []string
}

// Server is one redis-server process owned by a test.
type Server struct {
	t    testing.TB
	Port int
	dir  string
	args []string
	// Username and Password are the credentials clients need (empty:
	// none), as Options set them.
	Username, Password string
	// CA signed the server's certificate when it serves TLS (nil
	// otherwise); ClientCertFile and ClientKeyFile are a client
	// certificate it signed too, for tls-auth-clients yes.
	CA                            *testcert.CA
	ClientCertFile, ClientKeyFile string
	// sentinel marks a Redis Sentinel, which has no persistence flags.
	sentinel bool

	// mu guards cmd and exited.
	mu     sync.Mutex
	cmd    *exec.Cmd
	exited chan struct{}
}

// Addr returns the server's host:port.
func (s *Server) Addr() string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(s.Port)) }

// URL returns the server's redis:// URL (rediss:// for TLS), without
// credentials.
func (s *Server) URL() string {
	if s.CA != nil {
		return "rediss://" + s.Addr() + "/0"
	}
	return "redis://" + s.Addr() + "/0"
}

// ClientTLS returns a client TLS configuration for the server: it trusts
// the test CA and presents the client certificate. Nil when the server
// does not serve TLS.
func (s *Server) ClientTLS() *tls.Config {
	if s.CA == nil {
		return nil
	}
	cert, err := tls.LoadX509KeyPair(s.ClientCertFile, s.ClientKeyFile)
	if err != nil {
		s.t.Fatal(err)
	}
	return &tls.Config{RootCAs: s.CA.Pool, Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
}

// Options returns go-redis options that reach the server: its address,
// credentials and TLS.
func (s *Server) Options() *redis.Options {
	return &redis.Options{Addr: s.Addr(), Username: s.Username, Password: s.Password, TLSConfig: s.ClientTLS()}
}

// Start runs redis-server with no persistence on a free loopback port and
// waits until it answers PING. The test fails if redis-server is missing.
func Start(t testing.TB, extra ...string) *Server {
	t.Helper()
	return StartWith(t, Options{Args: extra})
}

// StartWith is Start with options: authentication, TLS, more arguments.
func StartWith(t testing.TB, o Options) *Server {
	t.Helper()
	s := newServer(t, freePort(t, false), o, nil)
	s.start()
	t.Cleanup(s.Kill)
	return s
}

// newServer prepares a server on port as o says: its configuration file
// and, for TLS, its certificates, issued by ca (nil: a fresh CA).
func newServer(t testing.TB, port int, o Options, ca *testcert.CA) *Server {
	t.Helper()
	if _, err := exec.LookPath("redis-server"); err != nil {
		t.Fatalf("redis-server is not installed (make test installs it): %v", err)
	}
	s := &Server{t: t, Port: port, dir: t.TempDir(), Username: o.Username, Password: o.Password}
	var conf []string
	switch {
	case o.Username != "":
		conf = append(conf,
			fmt.Sprintf("user %s on >%s ~* &* +@all", o.Username, o.Password),
			"user default off")
	case o.Password != "":
		conf = append(conf, "requirepass "+o.Password)
	}
	s.args = []string{"--port", strconv.Itoa(port)}
	if o.TLS {
		if ca == nil {
			ca = testcert.NewCA(t, t.TempDir())
		}
		s.CA = ca
		certFile, keyFile := ca.Issue(fmt.Sprintf("redis-%d", port))
		s.ClientCertFile, s.ClientKeyFile = ca.Issue(fmt.Sprintf("client-%d", port))
		auth := o.TLSAuthClients
		if auth == "" {
			auth = "no"
		}
		s.args = []string{"--port", "0", "--tls-port", strconv.Itoa(port)}
		conf = append(conf,
			"tls-cert-file "+certFile, "tls-key-file "+keyFile, "tls-ca-cert-file "+ca.CertFile,
			"tls-auth-clients "+auth)
	}
	// The secrets go in a file, not on the command line.
	confFile := filepath.Join(s.dir, "redis.conf")
	if err := os.WriteFile(confFile, []byte(strings.Join(conf, "\n")+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	s.args = append(append([]string{confFile}, s.args...), o.Args...)
	return s
}

func (s *Server) start() {
	s.t.Helper()
	var args []string
	if s.sentinel {
		args = s.args
	} else {
		// The configuration file comes first; later arguments win.
		args = append([]string{s.args[0],
			"--bind", "127.0.0.1",
			"--save", "", "--appendonly", "no", "--dir", s.dir,
			"--daemonize", "no", "--loglevel", "warning",
		}, s.args[1:]...)
	}
	cmd := exec.Command("redis-server", args...)
	log, err := os.Create(filepath.Join(s.dir, "redis.log"))
	if err != nil {
		s.t.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Start(); err != nil {
		s.t.Fatalf("starting redis-server: %v", err)
	}
	exited := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		_ = log.Close()
		close(exited)
	}()
	s.mu.Lock()
	s.cmd, s.exited = cmd, exited
	s.mu.Unlock()
	s.waitReady()
}

// waitReady polls PING until the server answers (10 s at most).
func (s *Server) waitReady() {
	s.t.Helper()
	opt := s.Options()
	opt.MaxRetries, opt.DialTimeout = -1, time.Second
	c := redis.NewClient(opt)
	defer c.Close()
	deadline := time.Now().Add(10 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		err := c.Ping(ctx).Err()
		cancel()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			logs, _ := os.ReadFile(filepath.Join(s.dir, "redis.log"))
			s.t.Fatalf("redis-server on %s did not answer: %v\n%s", s.Addr(), err, logs)
		}
		time.Sleep(20 * time.Millisecond) // polling a process start-up: no event to wait on
	}
}

// Kill stops the server with SIGKILL and waits for it to exit.
func (s *Server) Kill() {
	s.mu.Lock()
	cmd, exited := s.cmd, s.exited
	s.cmd = nil
	s.mu.Unlock()
	if cmd == nil {
		return
	}
	_ = cmd.Process.Kill()
	<-exited
}

// Save writes the dataset to disk so that Restart brings it back.
func (s *Server) Save() {
	s.t.Helper()
	c := redis.NewClient(s.Options())
	defer c.Close()
	if err := c.Save(context.Background()).Err(); err != nil {
		s.t.Fatalf("SAVE: %v", err)
	}
}

// Restart starts the server again on the same port. It comes back with the
// data of the last Save, or empty when there was none.
func (s *Server) Restart() {
	s.t.Helper()
	s.Kill()
	s.start()
}

// RestartEmpty starts the server again on the same port with no data, as
// after a crash that lost everything.
func (s *Server) RestartEmpty() {
	s.t.Helper()
	s.Kill()
	if err := os.Remove(filepath.Join(s.dir, "dump.rdb")); err != nil && !os.IsNotExist(err) {
		s.t.Fatal(err)
	}
	s.start()
}

// Client returns a go-redis client for the server, closed at cleanup.
func (s *Server) Client() *redis.Client {
	c := redis.NewClient(s.Options())
	s.t.Cleanup(func() { _ = c.Close() })
	return c
}

// Cluster is a Redis Cluster of three masters and no replicas.
type Cluster struct {
	Nodes []*Server
}

// ClusterOptions returns go-redis options that reach the cluster: its
// seed addresses, credentials and TLS.
func (c *Cluster) ClusterOptions() *redis.ClusterOptions {
	n := c.Nodes[0]
	return &redis.ClusterOptions{Addrs: c.Addrs(), Username: n.Username, Password: n.Password, TLSConfig: n.ClientTLS()}
}

// Addrs returns the masters' host:port addresses.
func (c *Cluster) Addrs() []string {
	out := make([]string, len(c.Nodes))
	for i, n := range c.Nodes {
		out[i] = n.Addr()
	}
	return out
}

// StartCluster starts three cluster-enabled servers, joins them with
// `redis-cli --cluster create` and waits until the cluster state is ok.
func StartCluster(t testing.TB) *Cluster {
	t.Helper()
	return StartClusterWith(t, Options{})
}

// StartClusterWith is StartCluster with options: every node requires the
// same credentials and, with TLS, serves TLS only (the cluster bus too)
// with certificates of one test CA.
func StartClusterWith(t testing.TB, o Options) *Cluster {
	t.Helper()
	if _, err := exec.LookPath("redis-cli"); err != nil {
		t.Fatalf("redis-cli is not installed (make test installs it): %v", err)
	}
	o.Args = append([]string{
		"--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
		"--cluster-node-timeout", "2000",
	}, o.Args...)
	if o.Password != "" {
		// The nodes authenticate to each other as the clients do.
		o.Args = append(o.Args, "--masterauth", o.Password)
		if o.Username != "" {
			o.Args = append(o.Args, "--masteruser", o.Username)
		}
	}
	if o.TLS {
		o.Args = append(o.Args, "--tls-cluster", "yes", "--tls-replication", "yes")
	}
	var ca *testcert.CA
	if o.TLS {
		ca = testcert.NewCA(t, t.TempDir())
	}
	c := &Cluster{}
	for i := 0; i < 3; i++ {
		s := newServer(t, freePort(t, true), o, ca)
		s.start()
		t.Cleanup(s.Kill)
		c.Nodes = append(c.Nodes, s)
	}
	args := append([]string{"--cluster", "create"}, c.Addrs()...)
	args = append(args, "--cluster-replicas", "0", "--cluster-yes")
	args = append(c.Nodes[0].cliArgs(), args...)
	cmd := exec.Command("redis-cli", args...)
	if o.Password != "" {
		cmd.Env = append(os.Environ(), "REDISCLI_AUTH="+o.Password)
	}
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("redis-cli --cluster create: %v\n%s", err, out)
	}
	deadline := time.Now().Add(20 * time.Second)
	for _, n := range c.Nodes {
		cl := redis.NewClient(n.Options())
		for {
			info, err := cl.ClusterInfo(context.Background()).Result()
			if err == nil && strings.Contains(info, "cluster_state:ok") {
				break
			}
			if time.Now().After(deadline) {
				_ = cl.Close()
				t.Fatalf("cluster node %s not ok: %v %s", n.Addr(), err, info)
			}
			time.Sleep(50 * time.Millisecond) // polling cluster convergence: no event to wait on
		}
		_ = cl.Close()
	}
	return c
}

// cliArgs are the redis-cli arguments that reach the server, but for the
// password, which redis-cli takes from REDISCLI_AUTH.
func (s *Server) cliArgs() []string {
	var args []string
	if s.Username != "" {
		args = append(args, "--user", s.Username)
	}
	if s.CA != nil {
		args = append(args, "--tls", "--cacert", s.CA.CertFile, "--cert", s.ClientCertFile, "--key", s.ClientKeyFile)
	}
	return args
}

// freePort returns a loopback port that is free now; with bus set, the
// cluster bus port (port + 10000) is free too. 6379 is never returned.
func freePort(t testing.TB, bus bool) int {
	t.Helper()
	for i := 0; i < 100; i++ {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		port := ln.Addr().(*net.TCPAddr).Port
		_ = ln.Close()
		if port == 6379 || (bus && port+10000 > 65535) {
			continue
		}
		if bus {
			bl, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port+10000))
			if err != nil {
				continue
			}
			_ = bl.Close()
		}
		return port
	}
	t.Fatal("no free port found")
	return 0
}

// MasterOf returns the address of the master that owns key's slot.
func (c *Cluster) MasterOf(key string) (string, error) {
	cl := redis.NewClusterClient(c.ClusterOptions())
	defer cl.Close()
	node, err := cl.MasterForKey(context.Background(), key)
	if err != nil {
		return "", err
	}
	return node.Options().Addr, nil
}

// SentinelOptions configure a Redis Sentinel.
type SentinelOptions struct {
	// Password is the sentinel's own requirepass, which its clients give
	// (go-redis: SentinelPassword). Empty: none.
	Password string
}

// StartSentinel runs a Redis Sentinel on a free loopback port that
// monitors master under the name "mymaster", and returns its address.
func StartSentinel(t testing.TB, master *Server) string {
	t.Helper()
	return StartSentinelWith(t, master, SentinelOptions{}).Addr()
}

// StartSentinelWith is StartSentinel with options. The sentinel
// authenticates to master with master's credentials. The returned Server's
// Password is the sentinel's.
func StartSentinelWith(t testing.TB, master *Server, o SentinelOptions) *Server {
	t.Helper()
	if master.CA != nil {
		t.Fatal("redistest: a sentinel of a TLS master is not supported")
	}
	s := &Server{t: t, Port: freePort(t, false), dir: t.TempDir(), Password: o.Password, sentinel: true}
	conf := filepath.Join(s.dir, "sentinel.conf")
	lines := []string{
		fmt.Sprintf("port %d", s.Port),
		"bind 127.0.0.1",
		fmt.Sprintf("sentinel monitor mymaster 127.0.0.1 %d 1", master.Port),
	}
	if master.Password != "" {
		lines = append(lines, "sentinel auth-pass mymaster "+master.Password)
	}
	if master.Username != "" {
		lines = append(lines, "sentinel auth-user mymaster "+master.Username)
	}
	if o.Password != "" {
		// requirepass protects this sentinel; sentinel-pass is what it
		// gives other sentinels of the same set.
		lines = append(lines, "requirepass "+o.Password, "sentinel sentinel-pass "+o.Password)
	}
	if err := os.WriteFile(conf, []byte(strings.Join(lines, "\n")+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	s.args = []string{conf, "--sentinel"}
	s.start()
	t.Cleanup(s.Kill)
	return s
}
