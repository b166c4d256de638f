package main

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/moby/buildkit/frontend/dockerfile/instructions"
	"github.com/moby/buildkit/frontend/dockerfile/shell"
)

// check applies canaryd's image rules. Each finding names the rule and what
// would satisfy it.
func (df *dockerfile) check() []finding {
	var out []finding
	add := func(line int, rule, format string, args ...any) {
		out = append(out, finding{line: line, rule: rule, msg: fmt.Sprintf(format, args...)})
	}
	if len(df.stages) < 2 {
		add(1, "MultiStage", "one stage only: build in one stage and copy the binary into a minimal final one")
		if len(df.stages) == 0 {
			return out
		}
	}
	names := map[string]bool{}
	for i, s := range df.stages {
		line := firstLine(s.Location)
		if err := df.pinned(s, names); err != nil {
			add(line, "PinnedBase", "%v", err)
		}
		names[strings.ToLower(s.Name)] = true
		names[strconv.Itoa(i)] = true
	}
	final := df.stages[len(df.stages)-1]
	finalLine := firstLine(final.Location)
	base := df.expand(final.BaseName)
	if base != "scratch" && !strings.HasPrefix(base, "gcr.io/distroless/static") {
		add(finalLine, "NoShellInFinalImage", "final base %q: use scratch or gcr.io/distroless/static* (no shell, no package manager)", base)
	}
	var user *instructions.UserCommand
	var entrypoint *instructions.EntrypointCommand
	for _, c := range final.Commands {
		switch c := c.(type) {
		case *instructions.RunCommand:
			add(firstLine(c.Location()), "NoShellInFinalImage", "RUN in the final stage: its base has no shell; do the work in the build stage")
		case *instructions.UserCommand:
			user = c
		case *instructions.EntrypointCommand:
			entrypoint = c
		case *instructions.CopyCommand:
			if c.From != "" && !names[strings.ToLower(c.From)] {
				add(firstLine(c.Location()), "CopyFromStage", "COPY --from=%s: no earlier stage has that name", c.From)
			}
		}
	}
	if user == nil {
		add(finalLine, "NonRootUser", "the final stage sets no USER: add USER 65532:65532")
	} else if uid, _, _ := strings.Cut(df.expand(user.User), ":"); !isNonRootUID(uid) {
		add(firstLine(user.Location()), "NonRootUser", "USER %q: want a numeric uid other than 0, so the kubelet can verify runAsNonRoot", user.User)
	}
	switch {
	case entrypoint == nil:
		add(finalLine, "ExecFormEntrypoint", "the final stage has no ENTRYPOINT")
	case entrypoint.PrependShell:
		add(firstLine(entrypoint.Location()), "ExecFormEntrypoint", "shell-form ENTRYPOINT needs /bin/sh, which the image does not have: use [\"/canaryd\"]")
	}
	step, err := df.goBuild(nil)
	if err != nil {
		add(finalLine, "StaticGoBuild", "%v", err)
		return out
	}
	for _, problem := range step.staticProblems() {
		add(step.Line, "StaticGoBuild", "%s", problem)
	}
	return out
}

func isNonRootUID(s string) bool {
	n, err := strconv.Atoi(s)
	return err == nil && n > 0
}

// pinned: a base image names a tag other than latest, or a digest.
func (df *dockerfile) pinned(s instructions.Stage, earlier map[string]bool) error {
	base := df.expand(s.BaseName)
	if base == "scratch" || earlier[strings.ToLower(base)] {
		return nil
	}
	if strings.Contains(base, "@sha256:") {
		return nil
	}
	name := base[strings.LastIndex(base, "/")+1:]
	_, tag, ok := strings.Cut(name, ":")
	switch {
	case !ok || tag == "":
		return fmt.Errorf("FROM %s has no tag: pin a version (or a digest)", base)
	case tag == "latest":
		return fmt.Errorf("FROM %s: latest moves under you; pin a version (or a digest)", base)
	}
	return nil
}

// expand substitutes the global ARGs' defaults (the ones FROM may use).
func (df *dockerfile) expand(word string) string {
	env := map[string]string{}
	for _, a := range df.metaArgs {
		for _, kv := range a.Args {
			if kv.Value != nil {
				env[kv.Key] = *kv.Value
			}
		}
	}
	out, _, err := shell.NewLex('\\').ProcessWord(word, envMap(env))
	if err != nil {
		return word
	}
	return out
}

// buildStep is the go build command of the Dockerfile, split into words as
// the shell would, with build arguments expanded.
type buildStep struct {
	Line int      `json:"line"`
	Env  []string `json:"env"`  // leading NAME=value words
	Args []string `json:"args"` // "go", "build", …
}

// goBuild finds the RUN that calls go build in a build stage. args
// (NAME=value) override the ARG defaults, as --build-arg does.
func (df *dockerfile) goBuild(args []string) (*buildStep, error) {
	env := map[string]string{}
	for i := range df.metaArgs {
		setArgs(env, &df.metaArgs[i])
	}
	for _, s := range df.stages[:len(df.stages)-1] {
		stageEnv := map[string]string{}
		for k, v := range env {
			stageEnv[k] = v
		}
		for _, c := range s.Commands {
			if a, ok := c.(*instructions.ArgCommand); ok {
				setArgs(stageEnv, a)
				for _, kv := range args {
					k, v, _ := strings.Cut(kv, "=")
					stageEnv[k] = v
				}
			}
			run, ok := c.(*instructions.RunCommand)
			if !ok || !run.PrependShell || len(run.CmdLine) == 0 || !strings.Contains(strings.Join(run.CmdLine, " "), "go build") {
				continue
			}
			words, err := shell.NewLex('\\').ProcessWords(strings.Join(run.CmdLine, " "), envMap(stageEnv))
			if err != nil {
				return nil, fmt.Errorf("line %d: splitting the go build command: %w", firstLine(run.Location()), err)
			}
			step := &buildStep{Line: firstLine(run.Location())}
			for len(words) > 0 && strings.Contains(words[0], "=") && !strings.HasPrefix(words[0], "-") {
				step.Env, words = append(step.Env, words[0]), words[1:]
			}
			step.Args = words
			if len(words) < 2 || words[0] != "go" || words[1] != "build" {
				return nil, fmt.Errorf("line %d: want one shell-form RUN of the form [NAME=value…] go build …, got %q", step.Line, strings.Join(words, " "))
			}
			return step, nil
		}
	}
	return nil, fmt.Errorf("no RUN with go build in a build stage")
}

func setArgs(env map[string]string, a *instructions.ArgCommand) {
	for _, kv := range a.Args {
		if kv.Value != nil {
			env[kv.Key] = *kv.Value
		} else if _, ok := env[kv.Key]; !ok {
			env[kv.Key] = ""
		}
	}
}

// staticProblems lists what keeps the build from being static, trimmed and
// stamped.
func (b *buildStep) staticProblems() []string {
	var out []string
	if !contains(b.Env, "CGO_ENABLED=0") {
		out = append(out, "CGO_ENABLED=0 is not set: the binary would link libc dynamically and not run on a static base")
	}
	if !contains(b.Args, "-trimpath") {
		out = append(out, "-trimpath is missing: build paths would leak into the binary and break reproducibility")
	}
	ldflags := ""
	for i, a := range b.Args {
		if v, ok := strings.CutPrefix(a, "-ldflags="); ok {
			ldflags = v
		} else if a == "-ldflags" && i+1 < len(b.Args) {
			ldflags = b.Args[i+1]
		}
	}
	fields := strings.Fields(ldflags)
	for _, want := range []string{"-s", "-w"} {
		if !contains(fields, want) {
			out = append(out, fmt.Sprintf("-ldflags lacks %s: the symbol and debug tables would ship in the image", want))
		}
	}
	if !strings.Contains(ldflags, "-X main.Version=") {
		out = append(out, "-ldflags lacks -X main.Version=…: `canaryd version` would say dev")
	}
	return out
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

type envMap map[string]string

func (e envMap) Get(key string) (string, bool) {
	v, ok := e[key]
	return v, ok
}

func (e envMap) Keys() []string {
	keys := make([]string, 0, len(e))
	for k := range e {
		keys = append(keys, k)
	}
	return keys
}
