package testenv

import (
	"bufio"
	"io"
	"net"
	"testing"
	"time"
)

// echoServer answers every line with the same line.
func echoServer(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				io.Copy(c, c)
			}()
		}
	}()
	return l.Addr().String()
}

// roundTrip sends a line through c and reads it back.
func roundTrip(c net.Conn) error {
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := c.Write([]byte("ping\n")); err != nil {
		return err
	}
	_, err := bufio.NewReader(c).ReadString('\n')
	return err
}

func TestTCPProxyCutResetsAndRefusesUntilRestored(t *testing.T) {
	p := NewTCPProxy(t, echoServer(t))
	open, err := net.Dial("tcp", p.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer open.Close()
	if err := roundTrip(open); err != nil {
		t.Fatalf("through the proxy: %v", err)
	}

	p.Cut()
	if err := roundTrip(open); err == nil {
		t.Fatal("a connection open before the cut still works")
	}
	if c, err := net.Dial("tcp", p.Addr()); err == nil {
		if err := roundTrip(c); err == nil {
			t.Fatal("a connection made during the cut works")
		}
		c.Close()
	}
	if p.Cuts() < 2 {
		t.Errorf("Cuts() = %d, want the open connection and the refused one", p.Cuts())
	}

	p.Restore()
	c, err := net.Dial("tcp", p.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := roundTrip(c); err != nil {
		t.Fatalf("after Restore: %v", err)
	}
}
