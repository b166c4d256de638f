package helm

import (
	"debug/elf"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
)

// No Docker engine runs here, so the image is proven in parts: the
// Dockerfile is parsed and linted by BuildKit's own code plus the image's
// rules (hack/dockerfile-lint), and the binary is built from the build
// context docker would send, with the Dockerfile's own go build command.

func TestDockerfilePassesBuildKitsLintAndTheImageRules(t *testing.T) {
	lint := dockerfileLintBin(t)
	out, err := exec.Command(lint, filepath.Join(env.root, "Dockerfile")).CombinedOutput()
	if err != nil || len(out) > 0 {
		t.Errorf("dockerfile-lint Dockerfile: %v\n%s", err, out)
	}
}

func TestDockerfileLintCatchesWhatTheImageMustNotDo(t *testing.T) {
	lint := dockerfileLintBin(t)
	out, err := exec.Command(lint, filepath.Join("testdata", "bad.Dockerfile")).CombinedOutput()
	if err == nil {
		t.Fatalf("dockerfile-lint passed a Dockerfile that breaks every rule:\n%s", out)
	}
	for _, want := range []string{
		"bad.Dockerfile:2: FromAsCasing:",                         // BuildKit's own rule
		"bad.Dockerfile:2: PinnedBase: FROM golang has no tag",    // untagged base
		"bad.Dockerfile:7: PinnedBase: FROM debian:latest",        // latest
		"bad.Dockerfile:7: NoShellInFinalImage: final base",       // a shell in the final image
		"bad.Dockerfile:8: NoShellInFinalImage: RUN in the final", // RUN where no shell exists
		"bad.Dockerfile:9: CopyFromStage: COPY --from=missing",
		"bad.Dockerfile:10: NonRootUser: USER \"nonroot\"",
		"bad.Dockerfile:11: ExecFormEntrypoint:",
		"bad.Dockerfile:5: StaticGoBuild: CGO_ENABLED=0 is not set",
		"bad.Dockerfile:5: StaticGoBuild: -trimpath is missing",
		"bad.Dockerfile:5: StaticGoBuild: -ldflags lacks -s",
	} {
		if !strings.Contains(string(out), want) {
			t.Errorf("no finding %q in:\n%s", want, out)
		}
	}
}

// TestDockerfileBuildsAStaticStampedBinary builds canaryd exactly as the
// Dockerfile's build stage does (its own go build command, ARGs as
// --build-arg would set them) in a copy of the build context .dockerignore
// leaves, then checks the ELF file: no interpreter, no shared libraries
// (it runs on distroless static, which has no libc), no symbol table, and
// the version stamped.
func TestDockerfileBuildsAStaticStampedBinary(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: builds canaryd")
	}
	lint := dockerfileLintBin(t)
	ctxDir := filepath.Join(t.TempDir(), "context")
	if out, err := exec.Command(lint, "-context", ctxDir, filepath.Join(env.root, "Dockerfile")).CombinedOutput(); err != nil {
		t.Fatalf("copying the build context: %v\n%s", err, out)
	}
	const version = "v0.0.0-imagetest"
	out, err := exec.Command(lint, "-build-command", "-arg", "VERSION="+version, "-arg", "TARGETOS="+runtime.GOOS,
		"-arg", "TARGETARCH="+runtime.GOARCH, filepath.Join(env.root, "Dockerfile")).Output()
	if err != nil {
		t.Fatalf("reading the Dockerfile's build step: %v", err)
	}
	var step struct {
		Env  []string `json:"env"`
		Args []string `json:"args"`
	}
	if err := json.Unmarshal(out, &step); err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(t.TempDir(), "canaryd")
	args := slices.Clone(step.Args)
	i := slices.Index(args, "-o")
	if i < 0 || i+1 >= len(args) {
		t.Fatalf("the build step has no -o: %v", args)
	}
	args[i+1] = bin // /out/canaryd in the image's build stage
	cmd := exec.Command(args[0], args[1:]...)
	cmd.Dir = ctxDir // WORKDIR /src after COPY . .
	cmd.Env = append(os.Environ(), step.Env...)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("%s %s: %v\n%s", strings.Join(step.Env, " "), strings.Join(args, " "), err, out)
	}

	f, err := elf.Open(bin)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP || p.Type == elf.PT_DYNAMIC {
			t.Errorf("program header %v: the binary is dynamically linked", p.Type)
		}
	}
	if libs, _ := f.ImportedLibraries(); len(libs) > 0 {
		t.Errorf("the binary needs shared libraries %v", libs)
	}
	if f.Section(".symtab") != nil || f.Section(".debug_info") != nil {
		t.Error("the binary keeps its symbol or DWARF tables (-s -w missing)")
	}
	got, err := exec.Command(bin, "version").Output()
	if err != nil || strings.TrimSpace(string(got)) != "canaryd "+version {
		t.Errorf("canaryd version = %q (%v), want %q", got, err, "canaryd "+version)
	}
	st, _ := os.Stat(bin)
	// distroless/static-debian12 adds about 2 MiB (CA certificates, tzdata,
	// /etc/passwd) under the binary: the image is that plus this.
	t.Logf("static canaryd (%s/%s, %s): %.1f MiB", runtime.GOOS, runtime.GOARCH, strings.Join(step.Env, " "), float64(st.Size())/(1<<20))
}
