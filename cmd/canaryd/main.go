// Command canaryd is the canary controller daemon. This file only wires
// flags to configuration and configuration to components; every decision
// lives in the rollout package and every cluster effect in kube.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"syscall"
)

// Version is stamped at build time: -ldflags "-X main.Version=v0.1.0".
var Version = "dev"

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	err := run(ctx, os.Args[1:])
	stop()
	if err != nil {
		if !errors.Is(err, errUsage) {
			fmt.Fprintln(os.Stderr, "canaryd:", err)
		}
		os.Exit(1)
	}
}

var errUsage = errors.New("usage")

func run(ctx context.Context, args []string) error {
	cmd := "run"
	if len(args) > 0 && len(args[0]) > 0 && args[0][0] != '-' {
		cmd, args = args[0], args[1:]
	}
	switch cmd {
	case "run":
		return serve(ctx, args)
	case "check":
		return check(ctx, args)
	case "version":
		fmt.Println("canaryd", Version)
		return nil
	default:
		fmt.Fprintf(os.Stderr, "canaryd: unknown command %q; commands: run (default), check, version\n", cmd)
		return errUsage
	}
}
