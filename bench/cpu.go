package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/quantix/cloudimages/internal/launch"
)

// clockTick is USER_HZ, the unit of /proc/PID/stat's times: 100 on Linux.
const clockTick = 100

// cpuTime is the user+system CPU a process has used so far.
func cpuTime(pid int) time.Duration {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0
	}
	// The command name may hold spaces; the fields after it are fixed.
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	if len(f) < 13 {
		return 0
	}
	utime, _ := strconv.ParseInt(f[11], 10, 64)
	stime, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(utime+stime) * time.Second / clockTick
}

// childPID finds a child of this process by its command name (the
// Temporal dev server, which testsuite starts for us).
func childPID(comm string) int {
	self := strconv.Itoa(os.Getpid())
	dirs, _ := filepath.Glob("/proc/[0-9]*/stat")
	for _, d := range dirs {
		b, err := os.ReadFile(d)
		if err != nil {
			continue
		}
		s := string(b)
		open, end := strings.IndexByte(s, '('), strings.LastIndexByte(s, ')')
		if open < 0 || end < open {
			continue
		}
		f := strings.Fields(s[end+1:])
		if len(f) > 1 && f[1] == self && s[open+1:end] == comm {
			pid, _ := strconv.Atoi(strings.Fields(s)[0])
			return pid
		}
	}
	return 0
}

// cpuUse snapshots the CPU of the stack's processes, to split a phase's
// CPU between them.
type cpuUse map[string]time.Duration

func (s *stack) cpu() cpuUse {
	u := cpuUse{}
	if pid := childPID("temporal"); pid > 0 {
		u["temporal"] = cpuTime(pid)
	}
	for name, p := range map[string]*launch.Process{"worker": s.worker, "api": s.api} {
		if p != nil && p.Running() {
			u[name] = cpuTime(p.Pid())
		}
	}
	for _, a := range s.agents {
		if a.p.Running() {
			u["agents"] += cpuTime(a.p.Pid())
		}
	}
	u["bench"] = cpuTime(os.Getpid())
	return u
}

// perDownload is the CPU each process spent per download between two
// snapshots.
func (u cpuUse) perDownload(after cpuUse, n int) string {
	var out []string
	for _, name := range []string{"temporal", "worker", "api", "agents", "bench"} {
		if _, ok := after[name]; ok {
			out = append(out, fmt.Sprintf("%s %s", name, ms((after[name]-u[name])/time.Duration(n))))
		}
	}
	return strings.Join(out, ", ")
}
