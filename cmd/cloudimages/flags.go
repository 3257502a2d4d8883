package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"time"
)

// errHelp is returned after --help printed the usage.
var errHelp = errors.New("help requested")

// usageError is a bad or missing setting: it exits 2 with a pointer to --help.
type usageError struct{ msg string }

func (e *usageError) Error() string { return e.msg }

func usagef(format string, args ...any) error { return &usageError{fmt.Sprintf(format, args...)} }

// flags is a flag set where every flag has an environment variable, which
// sets its default: a flag given on the command line wins over it.
type flags struct {
	fs      *flag.FlagSet
	name    string
	summary string
	envErrs []error
	lines   []string
}

func newFlags(name, summary string) *flags {
	f := &flags{fs: flag.NewFlagSet(name, flag.ContinueOnError), name: name, summary: summary}
	f.fs.SetOutput(io.Discard)
	return f
}

func (f *flags) doc(name, env, def, usage string) {
	line := fmt.Sprintf("  --%s\t%s\n    \tenv %s", name, usage, env)
	if def != "" {
		line += ", default " + def
	}
	f.lines = append(f.lines, line)
}

func (f *flags) string(p *string, name, env, def, usage string) {
	if v, ok := os.LookupEnv(env); ok {
		def = v
	}
	f.fs.StringVar(p, name, def, usage)
	f.doc(name, env, def, usage)
}

func (f *flags) bool(p *bool, name, env string, def bool, usage string) {
	if v, ok := os.LookupEnv(env); ok {
		b, err := strconv.ParseBool(v)
		if err != nil {
			f.envErrs = append(f.envErrs, usagef("%s=%q: want true or false", env, v))
		}
		def = b
	}
	f.fs.BoolVar(p, name, def, usage)
	f.doc(name, env, strconv.FormatBool(def), usage)
}

func (f *flags) int(p *int, name, env string, def int, usage string) {
	if v, ok := os.LookupEnv(env); ok {
		n, err := strconv.Atoi(v)
		if err != nil {
			f.envErrs = append(f.envErrs, usagef("%s=%q: want a whole number", env, v))
		}
		def = n
	}
	f.fs.IntVar(p, name, def, usage)
	f.doc(name, env, strconv.Itoa(def), usage)
}

func (f *flags) duration(p *time.Duration, name, env string, def time.Duration, usage string) {
	if v, ok := os.LookupEnv(env); ok {
		d, err := time.ParseDuration(v)
		if err != nil {
			f.envErrs = append(f.envErrs, usagef("%s=%q: want a duration such as 30s or 5m", env, v))
		}
		def = d
	}
	f.fs.DurationVar(p, name, def, usage)
	f.doc(name, env, def.String(), usage)
}

// list is a repeatable flag; when it is not given, its variable is split on commas.
func (f *flags) list(p *[]string, name, env, usage string) {
	if v := os.Getenv(env); v != "" {
		for _, item := range strings.Split(v, ",") {
			if item = strings.TrimSpace(item); item != "" {
				*p = append(*p, item)
			}
		}
	}
	fromFlags := false
	f.fs.Func(name, usage, func(v string) error {
		if !fromFlags {
			*p, fromFlags = nil, true
		}
		*p = append(*p, v)
		return nil
	})
	f.doc(name, env, "", usage+" (repeatable; the variable is comma-separated)")
}

// parse parses args; --help prints the usage and returns errHelp.
func (f *flags) parse(args []string) error {
	if err := f.fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			f.usage(os.Stdout)
			return errHelp
		}
		return usagef("%v", err)
	}
	if f.fs.NArg() > 0 {
		return usagef("unexpected argument %q", f.fs.Arg(0))
	}
	return errors.Join(f.envErrs...)
}

func (f *flags) usage(w io.Writer) {
	fmt.Fprintf(w, "Usage: cloudimages %s [flags]\n\n%s\n\nFlags:\n", f.name, f.summary)
	for _, l := range f.lines {
		fmt.Fprintln(w, strings.ReplaceAll(l, "\t", "  "))
	}
}
