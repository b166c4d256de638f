package bench

import (
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"
	"time"
)

// clockTick is Linux's USER_HZ, the unit of /proc CPU times: 100 on every
// architecture Go supports on Linux.
const clockTick = 100

// cpuSeconds is a process's user+system CPU time from /proc/<pid>/stat
// ("self" for this process).
func cpuSeconds(pid string) (float64, error) {
	b, err := os.ReadFile("/proc/" + pid + "/stat")
	if err != nil {
		return 0, fmt.Errorf("reading CPU time of %s: %w", pid, err)
	}
	// The command name (field 2) may hold spaces; the fields after its
	// closing parenthesis are plain numbers: utime and stime are the 12th
	// and 13th of them (fields 14 and 15 of the whole line).
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0, fmt.Errorf("odd /proc/%s/stat", pid)
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 13 {
		return 0, fmt.Errorf("odd /proc/%s/stat", pid)
	}
	u, err1 := strconv.ParseFloat(f[11], 64)
	st, err2 := strconv.ParseFloat(f[12], 64)
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("odd /proc/%s/stat", pid)
	}
	return (u + st) / clockTick, nil
}

// rssBytes is a process's resident set from /proc/<pid>/statm.
func rssBytes(pid string) (float64, error) {
	b, err := os.ReadFile("/proc/" + pid + "/statm")
	if err != nil {
		return 0, fmt.Errorf("reading memory of %s: %w", pid, err)
	}
	f := strings.Fields(string(b))
	if len(f) < 2 {
		return 0, fmt.Errorf("odd /proc/%s/statm", pid)
	}
	pages, err := strconv.ParseFloat(f[1], 64)
	if err != nil {
		return 0, fmt.Errorf("odd /proc/%s/statm", pid)
	}
	return pages * float64(os.Getpagesize()), nil
}

// machineCPU is the machine's busy and total CPU time, from /proc/stat.
func machineCPU() (busy, total float64, err error) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, 0, fmt.Errorf("reading /proc/stat: %w", err)
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line)
	if len(f) < 5 || f[0] != "cpu" {
		return 0, 0, fmt.Errorf("odd /proc/stat")
	}
	for i, v := range f[1:] {
		x, err := strconv.ParseFloat(v, 64)
		if err != nil {
			return 0, 0, fmt.Errorf("odd /proc/stat")
		}
		total += x
		if i != 3 && i != 4 { // idle and iowait
			busy += x
		}
	}
	return busy / clockTick, total / clockTick, nil
}

// CPUMeter measures CPU use of named processes over a window, in percent of
// one core, and the whole machine's busy share.
type CPUMeter struct {
	pids  map[string]string
	start map[string]float64
	t0    time.Time
	busy0 float64
	tot0  float64
}

// StartCPUMeter snapshots the processes (name → pid, "self" allowed).
func StartCPUMeter(pids map[string]string) *CPUMeter {
	m := &CPUMeter{pids: pids, start: map[string]float64{}, t0: time.Now()}
	for name, pid := range pids {
		if v, err := cpuSeconds(pid); err == nil {
			m.start[name] = v
		}
	}
	m.busy0, m.tot0, _ = machineCPU()
	return m
}

// Read is each process's CPU in percent of one core since the start, and the
// machine's busy percentage of all its cores.
func (m *CPUMeter) Read() (perProcess map[string]float64, machineBusy float64) {
	dt := time.Since(m.t0).Seconds()
	out := map[string]float64{}
	for name, pid := range m.pids {
		v, err := cpuSeconds(pid)
		if err != nil {
			continue
		}
		if s, ok := m.start[name]; ok && dt > 0 {
			out[name] = (v - s) / dt * 100
		}
	}
	busy, tot, err := machineCPU()
	if err == nil && tot > m.tot0 {
		machineBusy = (busy - m.busy0) / (tot - m.tot0) * 100
	}
	return out, machineBusy
}

// cores is the machine's CPU count as the scheduler sees it.
func cores() int { return runtime.NumCPU() }
