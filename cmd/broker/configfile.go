package main

import (
	"errors"
	"flag"
	"fmt"
	"os"

	tdconfig "github.com/tidings-io/tidings/config"
)

// environment is where the broker reads its TIDINGS_* (and OTEL_*)
// variables: the process's, or a test's.
type environment interface {
	// Getenv returns the variable's value, "" when unset.
	Getenv(name string) string
	// Environ lists the variables as NAME=value.
	Environ() []string
}

// osEnv is the process's environment.
type osEnv struct{}

func (osEnv) Getenv(name string) string { return os.Getenv(name) }
func (osEnv) Environ() []string         { return os.Environ() }

// notSettings are the flags that are no option of the config file: the
// file itself, and a command.
var notSettings = map[string]bool{"config": true, "version": true}

// fileLayer reads the config file, when -config (or TIDINGS_CONFIG)
// names one, and sets from it every flag that neither the command line
// (given) nor the environment set; then it records every option's value
// and where it came from. A file that cannot be read or holds a fault is
// a usage error naming the file, the line and the key.
func (c *config) fileLayer(fs *flag.FlagSet, given map[string]bool) error {
	if c.configFile != "" {
		f, err := tdconfig.Load(c.configFile)
		var fe *tdconfig.Error
		switch {
		case errors.As(err, &fe):
			return usageError{"config file " + fe.Error()}
		case err != nil:
			return c.invalid("config", err.Error())
		}
		for _, s := range f.Settings {
			if given[s.Key] || c.fromEnv[s.Key] != "" {
				continue
			}
			if err := fs.Set(s.Key, s.Value); err != nil {
				return usageError{fmt.Sprintf("config file %s: %s: %v", f.Where(s.Key), s.Key, err)}
			}
			c.fromFile[s.Key] = f.Where(s.Key)
		}
		c.file = f
	}
	c.settings, c.sources = map[string]string{}, map[string]string{}
	fs.VisitAll(func(f *flag.Flag) {
		if notSettings[f.Name] {
			return
		}
		c.settings[f.Name] = f.Value.String()
		switch {
		case given[f.Name]:
			c.sources[f.Name] = "flag"
		case c.fromEnv[f.Name] != "":
			c.sources[f.Name] = "env " + c.fromEnv[f.Name]
		case c.fromFile[f.Name] != "":
			c.sources[f.Name] = c.fromFile[f.Name]
		}
	})
	return nil
}

// defaults are what the namespaces leave unset, and the options of the
// topics that match none: the flags'.
func (c config) defaults() tdconfig.Defaults {
	return tdconfig.Defaults{HistorySize: c.historySize, HistoryTTL: c.historyTTL, Presence: c.presence, JoinLeave: c.joinLeave}
}

// snapshot is the configuration GET /v1/info shows, secrets masked.
func (c config) snapshot() *tdconfig.Snapshot {
	return tdconfig.NewSnapshot(c.configFile, c.settings, c.sources, c.namespaces)
}
