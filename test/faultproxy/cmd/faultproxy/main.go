// Command faultproxy puts a fault-injecting proxy in front of the API server
// named by a kubeconfig, and writes a kubeconfig for clients to go through it:
//
//	faultproxy --kubeconfig admin.kubeconfig --out proxied.kubeconfig \
//	    --write-fail-rate 0.1 --codes 500,429,409 --lost-share 0.5 --max-delay 200ms
//
// It runs until SIGINT or SIGTERM and then prints what it injected. See
// package faultproxy for what is and is not faulted.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"k8s.io/client-go/tools/clientcmd"

	"github.com/canaryd/canaryd/test/faultproxy"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "faultproxy:", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	fs := flag.NewFlagSet("faultproxy", flag.ContinueOnError)
	kubeconfig := fs.String("kubeconfig", os.Getenv("KUBECONFIG"), "kubeconfig of the API server to front (its credentials are the proxy's)")
	out := fs.String("out", "", "where to write the clients' kubeconfig (required)")
	listen := fs.String("listen", "127.0.0.1:0", "loopback address to listen on")
	rate := fs.Float64("write-fail-rate", 0.1, "share of writes to fail, 0 to 1")
	codes := fs.String("codes", "500,429,409", "status codes of failed writes, from 409, 429, 500, 503, 504")
	lost := fs.Float64("lost-share", 0.5, "share of 5xx failures forwarded first (the answer is lost), 0 to 1")
	delay := fs.Duration("max-delay", 200*time.Millisecond, "other requests wait uniformly up to this long")
	seed := fs.Uint64("seed", uint64(time.Now().UnixNano()), "seed of the fault draws")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *out == "" || *kubeconfig == "" {
		return fmt.Errorf("--kubeconfig and --out are required")
	}
	var cs []int
	for _, c := range strings.Split(*codes, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(c))
		if err != nil {
			return fmt.Errorf("--codes: %q is not a status code: %w", c, err)
		}
		cs = append(cs, n)
	}
	rc, err := clientcmd.BuildConfigFromFlags("", *kubeconfig)
	if err != nil {
		return fmt.Errorf("--kubeconfig %s: %w", *kubeconfig, err)
	}
	tlsCfg, err := faultproxy.TLSFor(rc)
	if err != nil {
		return err
	}
	p, err := faultproxy.New(faultproxy.Config{
		Upstream: rc.Host, TLS: tlsCfg, Listen: *listen, WriteFailRate: *rate, Codes: cs, LostShare: *lost,
		MaxDelay: *delay, Seed: *seed,
	})
	if err != nil {
		return err
	}
	defer p.Close()
	if err := p.WriteKubeconfig(*out); err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "faultproxy: %s → %s (seed %d); clients: --kubeconfig %s\n", p.URL(), rc.Host, *seed, *out)
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	<-ctx.Done()
	fmt.Fprintln(os.Stderr, "faultproxy:", p.Stats())
	return nil
}
