package main

import (
	"strings"
	"testing"
)

func TestParseFlagsRefusesBadValuesNamingTheFlag(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string // in the error; "" for no error
	}{
		{nil, ""},
		{[]string{"--workers", "16", "--kube-api-qps", "200", "--kube-api-burst", "400"}, ""},
		{[]string{"--workers", "0"}, "--workers 0: want at least 1"},
		{[]string{"--event-writers", "0"}, "--event-writers 0: want at least 1"},
		{[]string{"--kube-api-qps", "0"}, "--kube-api-qps 0: want more than 0"},
		{[]string{"--kube-api-qps", "NaN"}, "--kube-api-qps NaN: want more than 0"},
		{[]string{"--kube-api-burst", "-1"}, "--kube-api-burst -1: want at least 1"},
		{[]string{"--prometheus-headers", "novalue"}, `--prometheus-headers: "novalue" is not name=value`},
	} {
		o, err := parseFlags(tc.args)
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("%v: %v", tc.args, err)
		case tc.want == "" && (o.kubeQPS <= 0 || o.kubeBurst < 1 || o.workers < 1):
			t.Errorf("%v: options %+v", tc.args, o)
		case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
			t.Errorf("%v: error %v, want %q", tc.args, err, tc.want)
		}
	}
	o, err := parseFlags([]string{"--kube-api-qps", "200", "--kube-api-burst", "400"})
	if err != nil || o.kubeQPS != 200 || o.kubeBurst != 400 {
		t.Errorf("parsed %v, %v", o, err)
	}
}
