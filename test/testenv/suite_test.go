package testenv

import (
	"errors"
	"strings"
	"testing"

	"github.com/canaryd/canaryd/test/cluster"
)

func TestAvailable(t *testing.T) {
	tests := []struct {
		name     string
		ci       string
		wantSkip bool
		wantErr  bool
	}{
		{name: "a developer's run without the binaries skips", ci: "", wantSkip: true},
		{name: "CI=false is a developer's run", ci: "false", wantSkip: true},
		{name: "CI=0 is a developer's run", ci: "0", wantSkip: true},
		{name: "CI without the binaries fails", ci: "true", wantErr: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv("CANARYD_CACHE", t.TempDir()) // empty: the Kubernetes binaries are missing
			t.Setenv("CI", tc.ci)
			skip, err := Available()
			if (err != nil) != tc.wantErr || (skip != "") != tc.wantSkip {
				t.Fatalf("Available() = %q, %v; want skip %v, error %v", skip, err, tc.wantSkip, tc.wantErr)
			}
			if err != nil && !errors.Is(err, cluster.ErrBinariesMissing) {
				t.Errorf("error %v does not wrap cluster.ErrBinariesMissing", err)
			}
			if skip != "" && !strings.Contains(skip, "test/bootstrap.sh") {
				t.Errorf("skip reason %q does not say how to install the binaries", skip)
			}
		})
	}
}

func TestMainWithoutTheBinaries(t *testing.T) {
	tests := []struct {
		name     string
		ci       string
		wantCode int
		wantRun  bool // the tests run, each told to skip
	}{
		{name: "a developer's run runs the tests, which skip", ci: "", wantCode: 0, wantRun: true},
		{name: "CI fails before any test runs", ci: "true", wantCode: 1, wantRun: false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv("CANARYD_CACHE", t.TempDir())
			t.Setenv("CI", tc.ci)
			ran, used := false, false
			run := func() int { ran = true; return 0 }
			code := Main(run, Options{Name: "testenv-test", Canaryd: &Build{}}, func(e *Env, skip string) {
				used = true
				if e != nil || skip == "" {
					t.Errorf("use(%v, %q); want no Env and a reason to skip", e, skip)
				}
			})
			if code != tc.wantCode || ran != tc.wantRun || used != tc.wantRun {
				t.Errorf("Main = %d, tests ran %v, use called %v; want %d, %v, %v", code, ran, used, tc.wantCode, tc.wantRun, tc.wantRun)
			}
		})
	}
}
