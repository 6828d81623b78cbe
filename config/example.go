package config

import (
	"strconv"
	"strings"
)

// exampleHead opens Example.
const exampleHead = `# Tidings broker configuration: broker -config FILE (or TIDINGS_CONFIG=FILE).
#
# Every key is a flag of the broker without its dash, its value typed:
# numbers and true/false unquoted, durations as "30s", "5m" or "1h30m",
# lists as YAML lists. Each option below is set to its default; delete
# those you do not change. An unknown key, a value of the wrong type or
# out of range stops the broker with exit status 2 and names the line.
#
# Precedence: a flag on the command line wins over its TIDINGS_*
# environment variable, which wins over this file, which wins over the
# default.
#
# SIGHUP rereads this file: the namespaces and the options marked
# "reloads on SIGHUP" take effect at once, for the sessions already open
# too; a change to any other option is named in the log and needs a
# restart. Secrets (redis, redis-password, redis-sentinel-password,
# jwt-key, api-keys) are better given as TIDINGS_* variables from a
# secret store than written here.
`

// exampleNamespaces closes Example.
const exampleNamespaces = `
# ---- Namespaces ----
#
# Options per topic pattern. The first namespace whose pattern matches a
# topic is the topic's; a topic that matches none takes the options above
# (history-size, history-ttl, presence, join-leave) and the defaults
# below. A namespace that an earlier one covers whole is an error. Quote
# patterns: a leading * is a YAML alias.
#
#   pattern              a topic or a pattern (* one segment, > the rest)
#   history_size         messages kept per topic     (default: history-size)
#   history_ttl          how long they are kept      (default: history-ttl)
#   recovery             false: a subscribe with since is answered
#                        recovered: false, no replay  (default: true)
#   presence             keep who is subscribed      (default: presence)
#   join_leave           join and leave frames       (default: join-leave)
#   anonymous_subscribe  false: sessions without a user (no token, or a
#                        token without sub) get error forbidden, for
#                        wildcards that reach these topics too
#                                                    (default: true)
#   client_publish       who may publish over WebSocket: anyone (as the
#                        session's permissions allow), authenticated
#                        (sessions with a user), none; HTTP publishes
#                        are not client publishes  (default: anyone)
#   max_message_size     largest publish data in bytes, WebSocket and
#                        HTTP; over it error too_large (default 0: no
#                        bound of its own; max-message-size and
#                        max-body-size still apply)
#   proxy                the backend hooks that apply (subscribe,
#                        publish): accepted and shown now, applied when
#                        the backend hooks come (default: none)
namespaces:
  # Chat rooms: a longer history, who is in the room, joins and leaves.
  - pattern: "chat.>"
    history_size: 1000
    presence: true
    join_leave: true
  # Prices: only the latest matter; only backends publish (HTTP API).
  - pattern: "prices.>"
    history_size: 10
    client_publish: none
  # Private topics of a user: no anonymous subscriber.
  - pattern: "user.*"
    anonymous_subscribe: false
`

// Example returns a commented configuration file that sets every option
// to its default, each with what it does, its environment variable and
// whether SIGHUP reloads it, then the example namespaces chat.> (1000
// messages, presence, join and leave), prices.> (10 messages, no client
// publish) and user.* (no anonymous subscriber). Load accepts it.
func Example() string {
	var b strings.Builder
	b.WriteString(exampleHead)
	group := ""
	for _, o := range options {
		if o.Group != group {
			group = o.Group
			b.WriteString("\n# ---- " + group + " ----\n")
		}
		b.WriteString("\n")
		for _, line := range wrap(o.fileHelp(), 74) {
			b.WriteString("# " + line + "\n")
		}
		note := "# env " + o.Env()
		if o.Reload {
			note += "; reloads on SIGHUP"
		}
		b.WriteString(note + "\n")
		b.WriteString(o.Name + ": " + exampleValue(o) + "\n")
	}
	b.WriteString(exampleNamespaces)
	return b.String()
}

// exampleValue is o's default as YAML.
func exampleValue(o Option) string {
	switch o.Type {
	case Int, Float, Bool:
		return o.Default
	case List:
		return "[]"
	}
	return strconv.Quote(o.Default)
}

// wrap splits text into lines of at most width bytes, at spaces.
func wrap(text string, width int) []string {
	var lines []string
	line := ""
	for _, w := range strings.Fields(text) {
		if line != "" && len(line)+1+len(w) > width {
			lines = append(lines, line)
			line = ""
		}
		if line != "" {
			line += " "
		}
		line += w
	}
	return append(lines, line)
}
