package main

import (
	"context"
	"flag"
	"fmt"

	"github.com/tidings-io/tidings/config"
)

func runConfig(_ context.Context, e env, _ *globals, _ *flag.FlagSet, args []string) error {
	switch {
	case len(args) == 1 && args[0] == "example":
		fmt.Fprint(e.stdout, config.Example())
		return nil
	case len(args) == 2 && args[0] == "check":
		summary, err := config.Check(args[1])
		if err != nil {
			return err
		}
		fmt.Fprint(e.stdout, summary)
		return nil
	}
	return usagef("config check FILE, or config example")
}
