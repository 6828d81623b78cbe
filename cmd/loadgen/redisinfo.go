//go:build linux

package main

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"time"
)

// publishCommands are the Redis commands a broker's publication costs:
// the publish scripts and the pub/sub fan-out between nodes.
var publishCommands = []string{"evalsha", "eval", "publish", "spublish"}

// redisDo sends one command to the Redis server at addr over a fresh TCP
// connection and returns its reply: a bulk or simple string, or an
// integer as text.
func redisDo(addr string, args ...string) (string, error) {
	c, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err != nil {
		return "", err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	var b strings.Builder
	fmt.Fprintf(&b, "*%d\r\n", len(args))
	for _, a := range args {
		fmt.Fprintf(&b, "$%d\r\n%s\r\n", len(a), a)
	}
	if _, err := io.WriteString(c, b.String()); err != nil {
		return "", err
	}
	return readReply(bufio.NewReader(c))
}

// readReply reads one RESP reply that is not an array.
func readReply(r *bufio.Reader) (string, error) {
	line, err := r.ReadString('\n')
	if err != nil {
		return "", err
	}
	line = strings.TrimSuffix(strings.TrimSuffix(line, "\n"), "\r")
	if line == "" {
		return "", errors.New("redis: empty reply line")
	}
	switch line[0] {
	case '+', ':':
		return line[1:], nil
	case '-':
		return "", fmt.Errorf("redis: %s", line[1:])
	case '$':
		n, err := strconv.Atoi(line[1:])
		if err != nil || n > 64<<20 {
			return "", fmt.Errorf("redis: bad bulk length %q", line)
		}
		if n < 0 {
			return "", nil
		}
		buf := make([]byte, n+2)
		if _, err := io.ReadFull(r, buf); err != nil {
			return "", err
		}
		return string(buf[:n]), nil
	}
	return "", fmt.Errorf("redis: unexpected reply %.40q", line)
}

// parseCommandCalls sums the calls of the given commands in the text of
// INFO commandstats (lines cmdstat_<name>:calls=N,usec=…).
func parseCommandCalls(info string, cmds []string) (uint64, error) {
	want := map[string]bool{}
	for _, c := range cmds {
		want[strings.ToLower(c)] = true
	}
	var sum uint64
	for _, line := range strings.Split(info, "\n") {
		line = strings.TrimSpace(line)
		name, fields, ok := strings.Cut(line, ":")
		if !ok || !strings.HasPrefix(name, "cmdstat_") || !want[strings.ToLower(strings.TrimPrefix(name, "cmdstat_"))] {
			continue
		}
		found := false
		for _, kv := range strings.Split(fields, ",") {
			k, v, _ := strings.Cut(kv, "=")
			if k != "calls" {
				continue
			}
			n, err := strconv.ParseUint(v, 10, 64)
			if err != nil {
				return 0, fmt.Errorf("commandstats: %q: bad calls", line)
			}
			sum += n
			found = true
		}
		if !found {
			return 0, fmt.Errorf("commandstats: %q has no calls", line)
		}
	}
	return sum, nil
}

// publishCalls sums the publish-path command calls over the Redis
// servers at addrs.
func publishCalls(addrs []string) (uint64, error) {
	var sum uint64
	for _, a := range addrs {
		info, err := redisDo(a, "INFO", "commandstats")
		if err != nil {
			return 0, fmt.Errorf("INFO commandstats of %s: %w", a, err)
		}
		n, err := parseCommandCalls(info, publishCommands)
		if err != nil {
			return 0, err
		}
		sum += n
	}
	return sum, nil
}
