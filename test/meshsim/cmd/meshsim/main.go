// Command meshsim runs the Linkerd mesh simulator against a (kwok) cluster for the demo: it computes request
// outcomes from the routing objects and serves each pod's proxy metrics on a loopback address, together with a
// Prometheus file_sd targets file. It never connects to pod or Service IPs.
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"k8s.io/client-go/tools/clientcmd"

	"github.com/canaryd/canaryd/test/meshsim"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "meshsim:", err)
		os.Exit(1)
	}
}

func run() error {
	kubeconfig := flag.String("kubeconfig", os.Getenv("KUBECONFIG"), "kubeconfig of the cluster to simulate")
	listen := flag.String("listen", "127.0.0.1:0", "loopback address for /metrics and /pods/<ns>/<pod>/metrics")
	targets := flag.String("targets-file", "", "Prometheus file_sd JSON to write, one target per meshed pod")
	rps := flag.Float64("rps", 10, "requests per second for apex Services without a meshsim/rps annotation")
	seed := flag.Int64("seed", 1, "random seed")
	tick := flag.Duration("tick", 100*time.Millisecond, "simulation step")
	namespaces := flag.String("namespaces", "", "comma-separated namespaces to watch (default all)")
	poisson := flag.Bool("poisson", false, "draw request counts from a Poisson distribution")
	flag.Parse()

	rest, err := clientcmd.BuildConfigFromFlags("", *kubeconfig)
	if err != nil {
		return fmt.Errorf("load kubeconfig: %w", err)
	}
	var ns []string
	if *namespaces != "" {
		ns = strings.Split(*namespaces, ",")
	}
	sim, err := meshsim.New(meshsim.Config{
		RESTConfig:  rest,
		ListenAddr:  *listen,
		TargetsFile: *targets,
		DefaultRPS:  *rps,
		Tick:        *tick,
		Seed:        *seed,
		Namespaces:  ns,
		Poisson:     *poisson,
		Logger:      slog.New(slog.NewTextHandler(os.Stderr, nil)),
	})
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	go func() {
		select {
		case <-sim.Ready():
			fmt.Printf("meshsim listening on http://%s (targets file %q)\n", sim.Addr(), *targets)
		case <-ctx.Done():
		}
	}()
	if err := sim.Run(ctx); err != nil {
		return fmt.Errorf("run: %w", err)
	}
	return nil
}
