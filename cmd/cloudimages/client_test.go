package main

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/spf13/cobra"

	"github.com/quantix/cloudimages/api"
	"github.com/quantix/cloudimages/fault"
)

// TestFollowOpensTheStreamAgainUntilTheImageEnds: an events stream that
// ends while the image still downloads (an API restarting) is opened
// again, and following ends at the terminal snapshot.
func TestFollowOpensTheStreamAgainUntilTheImageEnds(t *testing.T) {
	var opened atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/v1/images/img-1/events" || r.Header.Get("Authorization") != "Bearer tok" {
			http.Error(w, "unexpected request", http.StatusTeapot)
			return
		}
		w.Header().Set("Content-Type", "text/event-stream")
		switch opened.Add(1) {
		case 1:
			fmt.Fprint(w, ": keep-alive\n\nevent: image\nid: 1\ndata: {\"id\":\"img-1\",\"status\":\"DOWNLOADING\",\n")
			fmt.Fprint(w, "data: \"progress\":{\"bytes_done\":5,\"bytes_total\":10}}\n\n")
		default:
			fmt.Fprint(w, "event: image\ndata: {\"id\":\"img-1\",\"status\":\"READY\",\"path\":\"/p/x\"}\n\n")
		}
	}))
	defer srv.Close()
	c := &conn{api.Client{BaseURL: srv.URL, Token: "tok"}}
	var seen []string
	last, err := c.follow(context.Background(), "img-1", func(s snapshot) {
		seen = append(seen, fmt.Sprintf("%s %d", s.img.Status, s.img.Progress.BytesDone))
	})
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(seen, ", "); got != "DOWNLOADING 5, READY 0" || last.img.Path != "/p/x" || opened.Load() != 2 {
		t.Errorf("saw %q ending at %+v over %d streams, want a multi-line DOWNLOADING event, then READY on a second stream", got, last.img, opened.Load())
	}
}

// TestFollowStopsAtAnAPIError: an error the API answers (the image is
// gone, the token is wrong) is not retried.
func TestFollowStopsAtAnAPIError(t *testing.T) {
	var opened atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		opened.Add(1)
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusNotFound)
		fmt.Fprint(w, `{"error":{"code":"not_found","message":"image \"x\" does not exist"}}`)
	}))
	defer srv.Close()
	c := &conn{api.Client{BaseURL: srv.URL}}
	_, err := c.follow(context.Background(), "x", func(snapshot) {})
	fe, ok := fault.As(err)
	if !ok || fe.Code != "not_found" || opened.Load() != 1 {
		t.Errorf("follow = %v after %d requests, want not_found after one", err, opened.Load())
	}
}

// TestTokenFlagsWinOverVariables: a flag wins over its variable; both
// flags, or both variables, are a usage error; a token file is trimmed.
func TestTokenFlagsWinOverVariables(t *testing.T) {
	file := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(file, []byte("  from-file-0123456789\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	empty := filepath.Join(t.TempDir(), "empty")
	os.WriteFile(empty, nil, 0o600)
	cases := []struct {
		name      string
		env, args []string
		want      string // the token, or the usage error's text
	}{
		{"none", nil, nil, ""},
		{"variable", []string{envAPIToken + "=from-env"}, nil, "from-env"},
		{"file variable", []string{envAPITokenFile + "=" + file}, nil, "from-file-0123456789"},
		{"flag over variable", []string{envAPIToken + "=from-env"}, []string{"--api-token", "from-flag"}, "from-flag"},
		{"file flag over variable", []string{envAPIToken + "=from-env"}, []string{"--api-token-file", file}, "from-file-0123456789"},
		{"both flags", nil, []string{"--api-token", "a", "--api-token-file", file}, "give one of them"},
		{"both variables", []string{envAPIToken + "=a", envAPITokenFile + "=" + file}, nil, "set one of them"},
		{"empty file", nil, []string{"--api-token-file", empty}, "is empty"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv(envAPIToken, "")
			t.Setenv(envAPITokenFile, "")
			for _, kv := range tc.env {
				k, v, _ := strings.Cut(kv, "=")
				t.Setenv(k, v)
			}
			var cfg clientConfig
			cmd := &cobra.Command{}
			cfg.register(cmd.Flags())
			if err := cmd.Flags().Parse(tc.args); err != nil {
				t.Fatal(err)
			}
			c, err := cfg.client(cmd)
			var ue *usageError
			switch {
			case errors.As(err, &ue):
				if !strings.Contains(err.Error(), tc.want) {
					t.Errorf("error %q, want %q", err, tc.want)
				}
			case err != nil:
				t.Fatal(err)
			case c.Token != tc.want:
				t.Errorf("token %q, want %q", c.Token, tc.want)
			}
		})
	}
}
