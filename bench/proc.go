package main

import (
	"bufio"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/quantix/cloudimages/internal/launch"
)

// memory is a process's resident set: now and its peak (VmRSS, VmHWM).
type memory struct{ RSS, Peak int64 }

// mem reads /proc/PID/status of the running process.
func mem(p *launch.Process) (memory, error) {
	if !p.Running() {
		return memory{}, fmt.Errorf("%s is not running", p.Name)
	}
	return procMemory(p.Pid())
}

func procMemory(pid int) (memory, error) {
	f, err := os.Open("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return memory{}, err
	}
	defer f.Close()
	var m memory
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue
		}
		kb, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
		switch k {
		case "VmRSS":
			m.RSS = kb << 10
		case "VmHWM":
			m.Peak = kb << 10
		}
	}
	return m, sc.Err()
}

// peakSampler polls a process's RSS until stopped and keeps the highest
// VmRSS seen: VmHWM cannot be reset, so a phase's own peak needs sampling.
type peakSampler struct {
	stopc chan struct{}
	done  chan int64
}

func samplePeak(p *launch.Process, every time.Duration) *peakSampler {
	s := &peakSampler{stopc: make(chan struct{}), done: make(chan int64, 1)}
	go func() {
		var peak int64
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			if m, err := mem(p); err == nil && m.RSS > peak {
				peak = m.RSS
			}
			select {
			case <-s.stopc:
				s.done <- peak
				return
			case <-t.C:
			}
		}
	}()
	return s
}

func (s *peakSampler) stop() int64 {
	close(s.stopc)
	return <-s.done
}
