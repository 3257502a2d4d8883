package store_test

import (
	"context"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/quantix/cloudimages/store"
)

// TestOpenErrorsHideThePassword opens databases that cannot work, the way
// an operator's typo or a down server does, and checks that no message
// shows the password, in any of the forms a DSN carries it.
func TestOpenErrorsHideThePassword(t *testing.T) {
	// A port that refuses connections: listen, note the port, close.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := l.Addr().String()
	l.Close()
	const pw = "Pa55word-s3cret"
	cases := []struct{ name, url string }{
		{"bad port, user info", "postgres://app:" + pw + "@db.example:notaport/app"},
		{"bad port, escaped user info", "postgres://app:" + strings.ReplaceAll(pw, "-", "%2D") + "@db.example:notaport/app"},
		{"unreachable, user info", "postgres://app:" + pw + "@" + closed + "/app?sslmode=disable&connect_timeout=2"},
		{"unreachable, password parameter", "postgres://app@" + closed + "/app?sslmode=disable&password=" + pw + "&connect_timeout=2"},
		{"unreachable, password parameter first", "postgresql://app@" + closed + "/app?password=" + pw},
		{"key=value DSN", "host=127.0.0.1 user=app password=" + pw + " dbname=app"},
		{"key=value DSN, quoted", "host=127.0.0.1 password='" + pw + " x' dbname=app"},
		{"unsupported scheme", "mysql://app:" + pw + "@db.example/app"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			s, err := store.Open(ctx, tc.url)
			if err == nil {
				s.Close()
				t.Fatal("Open succeeded")
			}
			if strings.Contains(err.Error(), pw) || strings.Contains(err.Error(), "s3cret") {
				t.Errorf("the error shows the password: %v", err)
			}
			if !strings.Contains(err.Error(), "xxxxx") && !strings.Contains(err.Error(), "postgres://") {
				t.Errorf("the error neither shows the redacted URL nor what to write: %v", err)
			}
		})
	}
}

func TestRedact(t *testing.T) {
	cases := map[string]string{
		"postgres://u:secret@h:5432/db":                     "postgres://u:xxxxx@h:5432/db",
		"postgres://u:sec@ret@h/db":                         "postgres://u:xxxxx@h/db",
		"postgres://u@h/db?sslmode=disable&password=secret": "postgres://u@h/db?sslmode=disable&password=xxxxx",
		"host=h password=secret dbname=db":                  "host=h password=xxxxx dbname=db",
		"host=h PASSWORD='sec ret' dbname=db":               "host=h PASSWORD=xxxxx dbname=db",
		`open database "postgres://u:secret@h/db": failed`:  `open database "postgres://u:xxxxx@h/db": failed`,
		"postgres://u@h/db":                                 "postgres://u@h/db",
		"sqlite:.data/cloudimages.db":                       "sqlite:.data/cloudimages.db",
	}
	for in, want := range cases {
		if got := store.Redact(in); got != want {
			t.Errorf("Redact(%q) = %q, want %q", in, got, want)
		}
	}
}
