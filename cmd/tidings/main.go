// Command tidings is the command line of a Tidings broker: subscribe and
// publish, mint and check tokens, read and act on the cluster through the
// server API, check a config file and measure a broker.
//
//	go install github.com/tidings-io/tidings/cmd/tidings@latest
//	tidings sub 'prices.>'
//	tidings pub prices.eur.usd '{"bid":1.0842}'
//
// Every command takes --url, --api-key and --token, or TIDINGS_URL,
// TIDINGS_API_KEY and TIDINGS_TOKEN. Exit status: 0 on success, 1 when the
// broker refused or could not be reached, 2 for a bad command line.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"sort"
	"strings"
	"syscall"

	"github.com/tidings-io/tidings/client"
)

// Exit statuses.
const (
	exitOK    = 0
	exitError = 1
	exitUsage = 2
)

// env is what a command sees of the process: its streams and environment.
type env struct {
	stdin          io.Reader
	stdout, stderr io.Writer
	getenv         func(string) string
}

// command is one subcommand.
type command struct {
	summary string
	usage   string // the arguments, after the command's name
	example string
	run     func(ctx context.Context, e env, g *globals, fs *flag.FlagSet, args []string) error
	flags   func(fs *flag.FlagSet) // the command's own flags, before parsing
}

// globals are the flags every command takes.
type globals struct {
	url, apiKey, token string
}

func (g *globals) register(fs *flag.FlagSet, getenv func(string) string) {
	def := func(name, fallback string) string {
		if v := getenv(name); v != "" {
			return v
		}
		return fallback
	}
	fs.StringVar(&g.url, "url", def("TIDINGS_URL", "http://localhost:8080"), "broker URL (env TIDINGS_URL)")
	fs.StringVar(&g.apiKey, "api-key", def("TIDINGS_API_KEY", ""), "API key for publishing and the server API (env TIDINGS_API_KEY)")
	fs.StringVar(&g.token, "token", def("TIDINGS_TOKEN", ""), "session token for subscribing (env TIDINGS_TOKEN)")
}

// client makes the broker client of g.
func (g *globals) client() (*client.Client, error) {
	return client.New(client.Config{URL: g.url, APIKey: g.apiKey, Token: g.token})
}

// usageError is a bad command line: exit status 2.
type usageError struct{ msg string }

func (e usageError) Error() string { return e.msg }

func usagef(format string, args ...any) error { return usageError{fmt.Sprintf(format, args...)} }

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], env{stdin: os.Stdin, stdout: os.Stdout, stderr: os.Stderr, getenv: os.Getenv})
	stop()
	os.Exit(code)
}

// run runs the command line args and returns the exit status.
func run(ctx context.Context, args []string, e env) int {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		printUsage(e.stdout)
		if len(args) == 0 {
			return exitUsage
		}
		return exitOK
	}
	name, c := args[0], commands[args[0]]
	if c == nil {
		fmt.Fprintf(e.stderr, "tidings: unknown command %q (tidings --help lists them)\n", name)
		return exitUsage
	}
	fs := flag.NewFlagSet("tidings "+name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	var g globals
	g.register(fs, e.getenv)
	if c.flags != nil {
		c.flags(fs)
	}
	rest, err := parseInterspersed(fs, args[1:])
	if errors.Is(err, flag.ErrHelp) {
		printCommandUsage(e.stdout, name, c, fs)
		return exitOK
	}
	if err == nil {
		err = c.run(ctx, e, &g, fs, rest)
	}
	var ue usageError
	switch {
	case err == nil:
		return exitOK
	case errors.As(err, &ue):
		fmt.Fprintf(e.stderr, "tidings %s: %v\nusage: tidings %s %s (tidings %s --help)\n", name, err, name, c.usage, name)
		return exitUsage
	case errors.Is(err, context.Canceled) && ctx.Err() != nil:
		return exitOK // Ctrl-C
	default:
		fmt.Fprintf(e.stderr, "tidings %s: %v\n", name, err)
		return exitError
	}
}

// parseInterspersed parses fs's flags wherever they stand among args and
// returns the other arguments in order; "--" ends the flags.
func parseInterspersed(fs *flag.FlagSet, args []string) ([]string, error) {
	var rest []string
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return nil, err
			}
			return nil, usageError{err.Error()}
		}
		args = fs.Args()
		if len(args) == 0 {
			return rest, nil
		}
		if args[0] == "--" {
			return append(rest, args[1:]...), nil
		}
		rest = append(rest, args[0])
		args = args[1:]
	}
}

func printUsage(w io.Writer) {
	fmt.Fprintln(w, "Usage: tidings COMMAND [flags] [arguments]")
	fmt.Fprintln(w, "\nCommands:")
	names := make([]string, 0, len(commands))
	for n := range commands {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		fmt.Fprintf(w, "  %-11s %s\n", n, commands[n].summary)
	}
	fmt.Fprintln(w, "\nEvery command takes --url (TIDINGS_URL, default http://localhost:8080),")
	fmt.Fprintln(w, "--api-key (TIDINGS_API_KEY) and --token (TIDINGS_TOKEN); tidings COMMAND --help")
	fmt.Fprintln(w, "shows its flags and an example. Exit status: 0 success, 1 the broker refused")
	fmt.Fprintln(w, "or could not be reached, 2 a bad command line.")
}

func printCommandUsage(w io.Writer, name string, c *command, fs *flag.FlagSet) {
	fmt.Fprintf(w, "Usage: tidings %s %s\n\n%s\n\nFlags:\n", name, c.usage, c.summary)
	fs.VisitAll(func(f *flag.Flag) {
		def := ""
		if f.DefValue != "" && f.DefValue != "false" {
			def = " (default " + f.DefValue + ")"
		}
		fmt.Fprintf(w, "  --%s\t%s%s\n", f.Name, f.Usage, def)
	})
	fmt.Fprintf(w, "\nExample:\n  %s\n", strings.ReplaceAll(c.example, "\n", "\n  "))
}
