package launch

import (
	"bytes"
	"context"
	"errors"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

func shell(t *testing.T, name, script string) *Process {
	t.Helper()
	p := &Process{Name: name, Path: "/bin/sh", Args: []string{"-c", script},
		LogPath: filepath.Join(t.TempDir(), name+".log"), ReadyTimeout: 10 * time.Second}
	t.Cleanup(func() { _ = p.Stop() })
	return p
}

func TestStartReportsAChildThatExitsWithItsLogTail(t *testing.T) {
	p := shell(t, "dies", "echo cannot open the pool; exit 3")
	p.Ready = func(context.Context, int) error { return errors.New("not yet") }
	err := p.Start(context.Background())
	if err == nil || !strings.Contains(err.Error(), "exited at start") || !strings.Contains(err.Error(), "cannot open the pool") {
		t.Fatalf("Start = %v; want an exit at start with the log's tail", err)
	}
	if p.Running() {
		t.Error("the process runs after a failed start")
	}
}

func TestStartSaysPortTakenWhenTheChildCouldNotBind(t *testing.T) {
	p := shell(t, "bind", "echo 'listen tcp 127.0.0.1:1: bind: address already in use'; exit 1")
	p.Ready = func(context.Context, int) error { return errors.New("not yet") }
	if err := p.Start(context.Background()); !errors.Is(err, ErrPortTaken) {
		t.Fatalf("Start = %v; want ErrPortTaken", err)
	}
	tries := 0
	err := StartOnFreePort(context.Background(), p, func() error { tries++; return nil })
	if !errors.Is(err, ErrPortTaken) || tries != 3 {
		t.Errorf("StartOnFreePort = %v after %d tries; want ErrPortTaken after 3", err, tries)
	}
}

func TestStopKillsAChildThatIgnoresSIGTERM(t *testing.T) {
	p := shell(t, "stubborn", "trap '' TERM; echo up; while :; do sleep 0.05; done")
	p.StopTimeout = 300 * time.Millisecond
	p.Ready = func(context.Context, int) error {
		if !strings.Contains(p.Log(), "\nup\n") { // not the command line in the log's header
			return errors.New("not up")
		}
		return nil
	}
	if err := p.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	err := p.Stop()
	if err == nil || !strings.Contains(err.Error(), "did not stop") {
		t.Errorf("Stop = %v; want it to say the child was killed", err)
	}
	if p.Running() {
		t.Error("the child runs after Stop")
	}
}

func TestStopEndsAChildGracefully(t *testing.T) {
	p := shell(t, "polite", "trap 'echo bye; exit 0' TERM; echo up; while :; do sleep 0.05; done")
	p.Ready = func(context.Context, int) error {
		if !strings.Contains(p.Log(), "\nup\n") { // not the command line in the log's header
			return errors.New("not up")
		}
		return nil
	}
	if err := p.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := p.Stop(); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(p.Log(), "bye") || !strings.Contains(p.State(), "exit status 0") {
		t.Errorf("state %s, log:\n%s; want a clean exit after SIGTERM", p.State(), p.Log())
	}
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func TestEchoPrefixesEachLineWithTheName(t *testing.T) {
	var term syncBuffer
	p := shell(t, "agent", "printf 'one\\ntwo\\nthree'")
	p.Echo = &term
	if err := p.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	<-p.Done()
	want := "agent    | one\nagent    | two\nagent    | three\n"
	if got := term.String(); got != want {
		t.Errorf("terminal got %q, want %q", got, want)
	}
	if !strings.Contains(p.Log(), "one\ntwo\nthree") {
		t.Errorf("log lacks the output:\n%s", p.Log())
	}
}
