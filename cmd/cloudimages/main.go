// Command cloudimages puts VM cloud images onto the storage pools of
// hypervisor nodes. One binary, one subcommand per process:
//
//	cloudimages dev        everything on embedded defaults, for a laptop
//	cloudimages api        the REST API and web UI
//	cloudimages worker     the Temporal worker
//	cloudimages nodeagent  the agent on one hypervisor node
//	cloudimages node-token a node's credential, from the cluster secret
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
)

// version is set at build time with -ldflags "-X main.version=…".
var version = "dev"

type command struct {
	name    string
	summary string
	run     func(ctx context.Context, args []string) error
}

var commands = []command{
	{"dev", "run everything on embedded defaults: Temporal dev server, worker, API, two node agents", runDev},
	{"api", "run the REST API and the web UI", runAPI},
	{"worker", "run the Temporal worker (DownloadImageWorkflow and its activities)", runWorker},
	{"nodeagent", "run the agent of one hypervisor node", runNodeAgent},
	{"node-token", "print a node's credential (its agent's --node-token) from the cluster secret", runNodeToken},
	{"version", "print the version", func(context.Context, []string) error { fmt.Println(version); return nil }},
}

func main() {
	slog.SetDefault(slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: logLevel()})))
	if len(os.Args) < 2 || os.Args[1] == "-h" || os.Args[1] == "--help" || os.Args[1] == "help" {
		usage(os.Stdout)
		if len(os.Args) < 2 {
			os.Exit(2)
		}
		return
	}
	name := os.Args[1]
	for _, c := range commands {
		if c.name != name {
			continue
		}
		ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
		err := c.run(ctx, os.Args[2:])
		stop()
		switch {
		case err == nil:
			return
		case errors.Is(err, errHelp):
			return
		case errors.As(err, new(*usageError)):
			fmt.Fprintf(os.Stderr, "cloudimages %s: %v\nRun 'cloudimages %s --help' for the flags.\n", name, err, name)
			os.Exit(2)
		default:
			fmt.Fprintf(os.Stderr, "cloudimages %s: %v\n", name, err)
			os.Exit(1)
		}
	}
	fmt.Fprintf(os.Stderr, "cloudimages: unknown command %q\n\n", name)
	usage(os.Stderr)
	os.Exit(2)
}

func usage(w *os.File) {
	fmt.Fprintf(w, "cloudimages puts VM cloud images onto the storage pools of hypervisor nodes.\n\nUsage: cloudimages COMMAND [flags]\n\nCommands:\n")
	for _, c := range commands {
		fmt.Fprintf(w, "  %-10s %s\n", c.name, c.summary)
	}
	fmt.Fprintf(w, "\nEvery flag has an environment variable; a flag wins over its variable.\nRun 'cloudimages COMMAND --help' for a command's flags.\n")
}

func logLevel() slog.Level {
	var l slog.Level
	if err := l.UnmarshalText([]byte(os.Getenv("CLOUDIMAGES_LOG_LEVEL"))); err != nil {
		return slog.LevelInfo
	}
	return l
}
