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
	secrets []*secretFlag
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
	f.stringShown(p, name, env, def, usage, func(v string) string { return v })
}

// stringShown is string for a value that may hold a secret, such as a
// database URL with a password: --help prints its default through show.
func (f *flags) stringShown(p *string, name, env, def, usage string, show func(string) string) {
	if v, ok := os.LookupEnv(env); ok {
		def = v
	}
	f.fs.StringVar(p, name, def, usage)
	f.doc(name, env, show(def), usage)
}

// minTokenLen is the shortest token a secret flag takes: shorter ones are
// guessable, and a short one is more often a placeholder than a secret.
const minTokenLen = 16

// secretFlag is a token given either as a value (--NAME, env ENV) or as a
// file that holds it (--NAME-file, env ENV_FILE).
type secretFlag struct {
	p         *string
	name, env string
	file      string
}

// secret registers a token flag and its -file twin. --help never prints
// the value, only whether it is set; the file keeps the token out of the
// process list and the environment. After parse the token is the value or
// the file's contents (trimmed): parse refuses a value and a file
// together, and an unreadable or empty file. checkTokens, called once the
// subcommand's other settings are checked, refuses a short or
// whitespace-only token.
func (f *flags) secret(p *string, name, env, usage string) {
	s := &secretFlag{p: p, name: name, env: env}
	f.secrets = append(f.secrets, s)
	*p = os.Getenv(env)
	s.file = os.Getenv(env + "_FILE")
	f.fs.StringVar(p, name, *p, usage)
	f.fs.StringVar(&s.file, name+"-file", s.file, "file that holds the "+name+" (instead of --"+name+")")
	shown := ""
	if *p != "" {
		shown = "set, not shown"
	}
	f.doc(name, env, shown, usage+" (secret: prefer --"+name+"-file)")
	f.doc(name+"-file", env+"_FILE", s.file, "file that holds the "+name+"; surrounding whitespace is trimmed")
}

func (s *secretFlag) resolve() error {
	if s.file != "" {
		if *s.p != "" {
			return usagef("both --%s and --%s-file are given (flags or %s and %s_FILE): give one of them", s.name, s.name, s.env, s.env)
		}
		b, err := os.ReadFile(s.file)
		if err != nil {
			return usagef("--%s-file: %v", s.name, err)
		}
		*s.p = strings.TrimSpace(string(b))
		if *s.p == "" {
			return usagef("--%s-file %s is empty: put a token of at least %d characters in it, e.g. openssl rand -hex 24 > %s", s.name, s.file, minTokenLen, s.file)
		}
	}
	return nil
}

// checkTokens refuses a token that is given but short or only whitespace:
// a placeholder such as "x" or "changeme" must not guard the API or an agent.
func (f *flags) checkTokens() error {
	for _, s := range f.secrets {
		if err := s.check(); err != nil {
			return err
		}
	}
	return nil
}

func (s *secretFlag) check() error {
	if *s.p == "" {
		return nil
	}
	if strings.TrimSpace(*s.p) == "" {
		return usagef("--%s is only whitespace: give a token of at least %d characters, e.g. $(openssl rand -hex 24)", s.name, minTokenLen)
	}
	if n := len(strings.TrimSpace(*s.p)); n < minTokenLen {
		return usagef("--%s is %d characters long, at least %d are needed: make one with openssl rand -hex 24", s.name, n, minTokenLen)
	}
	*s.p = strings.TrimSpace(*s.p)
	return nil
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
	if err := errors.Join(f.envErrs...); err != nil {
		return err
	}
	for _, s := range f.secrets {
		if err := s.resolve(); err != nil {
			return err
		}
	}
	return nil
}

func (f *flags) usage(w io.Writer) {
	fmt.Fprintf(w, "Usage: cloudimages %s [flags]\n\n%s\n\nFlags:\n", f.name, f.summary)
	for _, l := range f.lines {
		fmt.Fprintln(w, strings.ReplaceAll(l, "\t", "  "))
	}
}
