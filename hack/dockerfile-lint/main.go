// Command dockerfile-lint checks canaryd's Dockerfile without a Docker engine.
// It parses the file with BuildKit's own Dockerfile parser (the one
// `docker build` uses), reports every warning of the lint rules BuildKit
// applies while parsing (the rules of `docker build --check`), and adds the
// rules canaryd's image must keep: multi-stage, pinned bases, a static
// trimmed stamped Go build, a final stage with no shell, a numeric non-root
// USER and an exec-form ENTRYPOINT.
//
//	dockerfile-lint Dockerfile                  # findings, one a line; exit 1 if any
//	dockerfile-lint -build-command Dockerfile   # the go build step as JSON, ARGs expanded
//	dockerfile-lint -context DIR Dockerfile     # copy the build context (.dockerignore applied) to DIR
//
// It lives in its own module so that BuildKit never enters canaryd's go.mod.
// It must never build or run anything: it reads the Dockerfile and, with
// -context, copies files.
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/moby/buildkit/frontend/dockerfile/instructions"
	"github.com/moby/buildkit/frontend/dockerfile/linter"
	"github.com/moby/buildkit/frontend/dockerfile/parser"
)

func main() {
	buildCmd := flag.Bool("build-command", false, "print the go build step (env and argv, ARG defaults expanded; override with -arg) as JSON")
	contextDir := flag.String("context", "", "copy the build context beside the Dockerfile, as docker would send it (.dockerignore applied), into this directory")
	var args argFlags
	flag.Var(&args, "arg", "NAME=value: a build argument, as docker build --build-arg (repeatable)")
	flag.Parse()
	if flag.NArg() != 1 {
		fmt.Fprintln(os.Stderr, "usage: dockerfile-lint [-build-command | -context DIR] [-arg NAME=value]... <Dockerfile>")
		os.Exit(2)
	}
	path := flag.Arg(0)
	df, err := load(path)
	if err != nil {
		fmt.Fprintln(os.Stderr, "dockerfile-lint:", err)
		os.Exit(2)
	}
	if *contextDir != "" {
		n, err := copyContext(filepath.Dir(path), *contextDir)
		if err != nil {
			fmt.Fprintln(os.Stderr, "dockerfile-lint: build context:", err)
			os.Exit(1)
		}
		fmt.Printf("%d files copied\n", n)
		return
	}
	if *buildCmd {
		step, err := df.goBuild(args)
		if err != nil {
			fmt.Fprintf(os.Stderr, "dockerfile-lint: %s: %v\n", path, err)
			os.Exit(1)
		}
		_ = json.NewEncoder(os.Stdout).Encode(step)
		return
	}
	findings := append(df.warnings, df.check()...)
	for _, f := range findings {
		fmt.Printf("%s:%d: %s: %s\n", path, f.line, f.rule, f.msg)
	}
	if len(findings) > 0 {
		os.Exit(1)
	}
}

type finding struct {
	line int
	rule string
	msg  string
}

// dockerfile is a parsed Dockerfile with BuildKit's parse-time warnings.
type dockerfile struct {
	stages   []instructions.Stage
	metaArgs []instructions.ArgCommand
	warnings []finding
}

func load(path string) (*dockerfile, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("opening %s: %w", path, err)
	}
	defer f.Close()
	res, err := parser.Parse(f)
	if err != nil {
		return nil, fmt.Errorf("parsing %s: %w", path, err)
	}
	df := &dockerfile{}
	for _, w := range res.Warnings {
		df.warnings = append(df.warnings, finding{line: w.Location.Start.Line, rule: "Parser", msg: w.Short})
	}
	lint := linter.New(&linter.Config{Warn: func(rule, _, _, msg string, loc []parser.Range) {
		df.warnings = append(df.warnings, finding{line: firstLine(loc), rule: rule, msg: msg})
	}})
	df.stages, df.metaArgs, err = instructions.Parse(res.AST, lint)
	if err != nil {
		return nil, fmt.Errorf("reading the instructions of %s: %w", path, err)
	}
	return df, nil
}

func firstLine(loc []parser.Range) int {
	if len(loc) == 0 {
		return 0
	}
	return loc[0].Start.Line
}

type argFlags []string

func (a *argFlags) String() string { return strings.Join(*a, ",") }
func (a *argFlags) Set(v string) error {
	if !strings.Contains(v, "=") {
		return fmt.Errorf("-arg %q: want NAME=value", v)
	}
	*a = append(*a, v)
	return nil
}
