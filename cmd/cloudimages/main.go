// Command cloudimages puts VM cloud images onto the storage pools of
// hypervisor nodes. One binary: the server processes, and a command-line
// client of the REST API.
//
//	cloudimages dev        everything on embedded defaults, for a laptop
//	cloudimages api        the REST API and web UI
//	cloudimages worker     the Temporal worker
//	cloudimages nodeagent  the agent on one hypervisor node
//	cloudimages node-token a node's credential, from the cluster secret
//	cloudimages images …   list, pull, upload and remove images (the client)
//	cloudimages catalog ls, nodes ls, pools ls
package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	// Transfer windows name IANA time zones: the binary carries the zone
	// database, so a node or container without /usr/share/zoneinfo reads
	// them the same.
	_ "time/tzdata"

	"github.com/spf13/cobra"
)

// version is set at build time with -ldflags "-X main.version=…".
var version = "dev"

// command is a server subcommand (or node-token, version). Its flags are
// parsed by its own run function (flags.go: every flag with an environment
// variable), so cobra hands it the arguments untouched.
type command struct {
	name    string
	summary string
	run     func(ctx context.Context, args []string) error
}

var commands = []command{
	{"dev", "run everything on embedded defaults: Temporal dev server, worker, API, node agents (two, or --agents N)", runDev},
	{"api", "run the REST API and the web UI", runAPI},
	{"worker", "run the Temporal worker (DownloadImageWorkflow and its activities)", runWorker},
	{"nodeagent", "run the agent of one hypervisor node", runNodeAgent},
	{"node-token", "print a node's credential (its agent's --node-token) from the cluster secret", runNodeToken},
	{"version", "print the version", func(context.Context, []string) error { fmt.Println(version); return nil }},
}

func main() {
	slog.SetDefault(slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: logLevel()})))
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	root := newRoot()
	cmd, err := root.ExecuteContextC(ctx)
	stop()
	os.Exit(exitCode(cmd, err))
}

// errNoCommand is `cloudimages` alone: the usage is printed, and the exit
// is 2 as for any other missing argument.
var errNoCommand = errors.New("no command given")

func newRoot() *cobra.Command {
	cobra.EnableCommandSorting = false // servers in the order above, then the client commands
	root := &cobra.Command{
		Use:   "cloudimages",
		Short: "cloudimages puts VM cloud images onto the storage pools of hypervisor nodes",
		Long: "cloudimages puts VM cloud images onto the storage pools of hypervisor nodes.\n\n" +
			"The server commands run the processes; the client commands talk to a running API\n" +
			"(--api-url, default http://127.0.0.1:8080, as `cloudimages dev` starts it).\n" +
			"Every flag of a server command has an environment variable; a flag wins over its variable.\n" +
			"Run 'cloudimages COMMAND --help' for a command's flags.",
		SilenceErrors: true,
		SilenceUsage:  true,
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) == 0 {
				return nil
			}
			msg := fmt.Sprintf("unknown command %q", args[0])
			if s := cmd.SuggestionsFor(args[0]); len(s) > 0 {
				msg += fmt.Sprintf(" (did you mean %q?)", s[0])
			}
			return usagef("%s", msg)
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			cmd.SetOut(os.Stdout)
			cmd.Help()
			return errNoCommand
		},
	}
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return usagef("%v", err) })
	root.AddGroup(&cobra.Group{ID: "servers", Title: "Server commands:"}, &cobra.Group{ID: "client", Title: "Client commands (talk to the API):"})
	for _, c := range commands {
		root.AddCommand(c.cobraCommand())
	}
	for _, c := range clientCommands() {
		c.GroupID = "client"
		root.AddCommand(c)
	}
	return root
}

// command wraps a server subcommand: its arguments and --help go to its
// own flag set, as before the client commands came.
func (s command) cobraCommand() *cobra.Command {
	c := &cobra.Command{
		Use:                s.name + " [flags]",
		Short:              s.summary,
		GroupID:            "servers",
		DisableFlagParsing: true,
		RunE: func(cmd *cobra.Command, args []string) error {
			return s.run(cmd.Context(), args)
		},
	}
	// `cloudimages help api` prints what `cloudimages api --help` prints.
	c.SetHelpFunc(func(cmd *cobra.Command, _ []string) {
		ctx := cmd.Context()
		if ctx == nil {
			ctx = context.Background()
		}
		s.run(ctx, []string{"--help"})
	})
	return c
}

// exitCode prints err, if any, and says how the process ends: 0, 1 for a
// failure, 2 for a usage error (a bad flag, a missing argument), 130 for
// an interrupted client command.
func exitCode(cmd *cobra.Command, err error) int {
	name := "cloudimages"
	if cmd != nil {
		name = cmd.CommandPath()
	}
	var ue *usageError
	switch {
	case err == nil, errors.Is(err, errHelp):
		return 0
	case errors.Is(err, errNoCommand):
		return 2
	case errors.As(err, &ue):
		what := "the flags"
		if cmd == nil || !cmd.HasParent() {
			what = "the commands"
		}
		fmt.Fprintf(os.Stderr, "%s: %v\nRun '%s --help' for %s.\n", name, err, name, what)
		return 2
	case errors.Is(err, errInterrupted):
		return 130
	case errors.Is(err, context.Canceled) && cmd != nil && cmd.GroupID != "servers":
		// Ctrl-C during a client's request: nothing to add.
		return 130
	}
	var se silentExit
	if errors.As(err, &se) {
		return int(se)
	}
	if msg, ok := apiErrorText(err); ok {
		fmt.Fprintln(os.Stderr, msg)
		return 1
	}
	fmt.Fprintf(os.Stderr, "%s: %v\n", name, err)
	return 1
}

func logLevel() slog.Level {
	var l slog.Level
	if err := l.UnmarshalText([]byte(os.Getenv("CLOUDIMAGES_LOG_LEVEL"))); err != nil {
		return slog.LevelInfo
	}
	return l
}
