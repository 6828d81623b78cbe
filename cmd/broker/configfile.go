package main

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

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

// binding ties an option of package config to the field of config its
// flag sets: the flag's name, usage and default are the option's.
type binding struct {
	name string
	// field points at the field: *string, *int, *int64, *float64, *bool,
	// *time.Duration, or *[]string for a List's items.
	field any
	// def is the option's default when a package's Default constant
	// holds it (TestConfigOptionsAreFlags checks that the option's
	// Default prints the same); nil: the option's Default.
	def any
}

// fieldType is the Go type of a field an option sets.
type fieldType interface {
	string | int | int64 | float64 | bool | time.Duration | []string
}

// opt binds the option name to p, with the option's default.
func opt[T fieldType](name string, p *T) binding {
	return binding{name: name, field: p}
}

// optDef binds the option name to p, with def, a package's Default
// constant, as its default.
func optDef[T fieldType](name string, p *T, def T) binding {
	return binding{name: name, field: p, def: def}
}

// declare declares b's flag on fs from its option: its name, its usage,
// its default (b.def, else the option's Default), and for an option
// with an Enum a value spelt as the Enum does.
func (b binding) declare(fs *flag.FlagSet) {
	o, ok := tdconfig.Lookup(b.name)
	if !ok {
		panic("no option " + b.name + " in package config")
	}
	name, usage := o.Name, o.Usage()
	switch p := b.field.(type) {
	case *string:
		*p = defaultOf(b, o, func(s string) (string, error) { return s, nil })
		fs.Var(&stringValue{p, o.Enum}, name, usage)
	case *int:
		fs.IntVar(p, name, defaultOf(b, o, strconv.Atoi), usage)
	case *int64:
		fs.Int64Var(p, name, defaultOf(b, o, func(s string) (int64, error) { return strconv.ParseInt(s, 10, 64) }), usage)
	case *float64:
		fs.Float64Var(p, name, defaultOf(b, o, func(s string) (float64, error) { return strconv.ParseFloat(s, 64) }), usage)
	case *bool:
		fs.BoolVar(p, name, defaultOf(b, o, strconv.ParseBool), usage)
	case *time.Duration:
		fs.DurationVar(p, name, defaultOf(b, o, time.ParseDuration), usage)
	case *[]string:
		*p = defaultOf(b, o, func(s string) ([]string, error) { return splitList(s), nil })
		fs.Var((*listValue)(p), name, usage)
	default:
		panic(fmt.Sprintf("option %s: a field of type %T", b.name, b.field))
	}
}

// defaultOf is b's default: b.def, else o's Default read by parse.
func defaultOf[T any](b binding, o tdconfig.Option, parse func(string) (T, error)) T {
	if def, ok := b.def.(T); ok {
		return def
	}
	v, err := parse(o.Default)
	if err != nil {
		panic(fmt.Sprintf("option %s: default %q: %v", o.Name, o.Default, err))
	}
	return v
}

// stringValue is a String option's flag. With an Enum, a value that
// matches one of its values but for case is spelt as the Enum does; any
// other is left to Option.Check, in validate.
type stringValue struct {
	p    *string
	enum []string
}

func (v *stringValue) String() string {
	if v == nil || v.p == nil {
		return ""
	}
	return *v.p
}

func (v *stringValue) Set(s string) error {
	*v.p = s
	for _, e := range v.enum {
		if strings.EqualFold(s, e) {
			*v.p = e
			break
		}
	}
	return nil
}

func (v *stringValue) Get() any { return *v.p }

// listValue is a List option's flag: its items comma-separated, blanks
// dropped.
type listValue []string

func (l *listValue) String() string {
	if l == nil {
		return ""
	}
	return strings.Join(*l, ",")
}

func (l *listValue) Set(s string) error {
	*l = splitList(s)
	return nil
}

func (l *listValue) Get() any { return []string(*l) }
