//go:build linux

package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"time"
)

// redisBackend is the Redis the cluster scenario's brokers share: one
// redis-server, or the three masters of a Redis Cluster.
type redisBackend struct {
	procs   []*redisProc
	cluster bool
}

// startRedisBackend starts one redis-server, or with cluster a 3-master
// Redis Cluster, with its files under dir.
func startRedisBackend(ctx context.Context, bin, dir string, cluster bool) (*redisBackend, error) {
	if !cluster {
		p, err := startRedis(bin, dir)
		if err != nil {
			return nil, err
		}
		return &redisBackend{procs: []*redisProc{p}}, nil
	}
	b := &redisBackend{cluster: true}
	for i := 0; i < 3; i++ {
		port, err := freeBusPort()
		if err != nil {
			b.stop()
			return nil, err
		}
		nd := filepath.Join(dir, fmt.Sprintf("node-%d", i))
		if err := os.MkdirAll(nd, 0o755); err != nil {
			b.stop()
			return nil, err
		}
		p, err := startRedisOn(bin, nd, port, "--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf", "--cluster-node-timeout", "2000")
		if err != nil {
			b.stop()
			return nil, err
		}
		b.procs = append(b.procs, p)
	}
	if err := b.create(ctx, bin); err != nil {
		b.stop()
		return nil, err
	}
	return b, nil
}

// create joins the masters with redis-cli --cluster create and waits
// until every node reports cluster_state:ok.
func (b *redisBackend) create(ctx context.Context, serverBin string) error {
	cli := "redis-cli"
	if strings.Contains(serverBin, "/") {
		cli = filepath.Join(filepath.Dir(serverBin), "redis-cli")
	}
	cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	args := append(append([]string{"--cluster", "create"}, b.addrs()...), "--cluster-replicas", "0", "--cluster-yes")
	if out, err := exec.CommandContext(cctx, cli, args...).CombinedOutput(); err != nil {
		return fmt.Errorf("%s --cluster create: %w\n%s", cli, err, out)
	}
	deadline := time.Now().Add(20 * time.Second)
	for _, a := range b.addrs() {
		for {
			info, err := redisDo(a, "CLUSTER", "INFO")
			if err == nil && strings.Contains(info, "cluster_state:ok") {
				break
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("redis cluster node %s not ok: %v %.200s", a, err, info)
			}
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(50 * time.Millisecond): // no event to wait on
			}
		}
	}
	return nil
}

// addrs are the servers' host:port addresses.
func (b *redisBackend) addrs() []string {
	out := make([]string, len(b.procs))
	for i, p := range b.procs {
		out[i] = p.addr()
	}
	return out
}

// pids are the redis-server processes.
func (b *redisBackend) pids() []int {
	out := make([]int, len(b.procs))
	for i, p := range b.procs {
		out[i] = p.cmd.Process.Pid
	}
	return out
}

// targets are the servers as pids to sample along with the brokers.
func (b *redisBackend) targets() []target {
	var out []target
	for _, pid := range b.pids() {
		out = append(out, target{pid: pid})
	}
	return out
}

// brokerArgs are the broker flags that reach this Redis.
func (b *redisBackend) brokerArgs() []string {
	if b.cluster {
		return []string{"-redis-cluster", strings.Join(b.addrs(), ",")}
	}
	return []string{"-redis", "redis://" + b.procs[0].addr() + "/0"}
}

// name is how phase labels call this Redis.
func (b *redisBackend) name() string {
	if b.cluster {
		return "Redis Cluster"
	}
	return "Redis"
}

// stop ends the servers this loadgen started.
func (b *redisBackend) stop() {
	if b == nil {
		return
	}
	var wg sync.WaitGroup
	for _, p := range b.procs {
		wg.Add(1)
		go func() { defer wg.Done(); p.stop() }()
	}
	wg.Wait()
}

// freeBusPort returns a free loopback port whose cluster bus port (port +
// 10000) is free too; never 6379.
func freeBusPort() (int, error) {
	for range 100 {
		port, err := freePort()
		if err != nil {
			return 0, err
		}
		if port+10000 > 65535 {
			continue
		}
		ln, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port+10000))
		if err != nil {
			continue
		}
		_ = ln.Close()
		return port, nil
	}
	return 0, errors.New("no free port with a free cluster bus port")
}
