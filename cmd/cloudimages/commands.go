package main

import (
	"github.com/spf13/cobra"
)

// clientCommands are the commands that talk to a running API. They share
// the connection flags (--api-url, --api-token, --api-token-file).
func clientCommands() []*cobra.Command {
	cfg := &clientConfig{}
	return []*cobra.Command{
		group("images", "list, pull, upload, follow and remove images", cfg,
			imagesLs(cfg), imagesGet(cfg), imagesRm(cfg), imagesPull(cfg), imagesWait(cfg), imagesUpload(cfg)),
		distributions(cfg),
		group("catalog", "the catalog of images the API knows", cfg, catalogLs(cfg)),
		group("nodes", "the hypervisor nodes and their agents", cfg, nodesLs(cfg)),
		group("pools", "the storage pools", cfg, poolsLs(cfg)),
	}
}

// distributions is the distributions group, `dist` for short.
func distributions(cfg *clientConfig) *cobra.Command {
	g := group("distributions", "put one image into many pools, copied from node to node", cfg,
		distributionsCreate(cfg), distributionsLs(cfg), distributionsGet(cfg), distributionsRm(cfg), distributionsWait(cfg))
	g.Aliases = []string{"dist"}
	return g
}

// group is a command that only holds subcommands: alone it prints its
// help; with an unknown subcommand it is a usage error.
func group(name, short string, cfg *clientConfig, subs ...*cobra.Command) *cobra.Command {
	g := &cobra.Command{
		Use:   name,
		Short: short,
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) > 0 {
				return usagef("unknown command %q for %q", args[0], cmd.CommandPath())
			}
			return cmd.Help()
		},
	}
	cfg.register(g.PersistentFlags())
	g.AddCommand(subs...)
	return g
}

// noArgs and exactArgs check the arguments, as usage errors (exit 2).
func noArgs(cmd *cobra.Command, args []string) error {
	if len(args) > 0 {
		return usagef("unexpected argument %q", args[0])
	}
	return nil
}

func exactArgs(n int, what string) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if len(args) != n {
			return usagef("want %s, got %d arguments", what, len(args))
		}
		return nil
	}
}
