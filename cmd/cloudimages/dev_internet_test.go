package main

import (
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func TestProbeMirrorIsQuietWhenTheMirrorAnswers(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusNotFound) // any answer means the host is reachable
	}))
	defer srv.Close()
	if msg := <-probeMirror(context.Background(), srv.URL+"/images/x.img"); msg != "" {
		t.Errorf("probe of a mirror that answers says %q", msg)
	}
}

func TestProbeMirrorSaysPlainlyWhenTheMirrorCannotBeReached(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close() // nothing listens there now
	msg := <-probeMirror(context.Background(), "http://"+addr+"/x.img")
	for _, want := range []string{"cannot reach " + addr, "connection refused", "built-in catalog will fail", "images upload FILE --pool local-1 --wait"} {
		if !strings.Contains(msg, want) {
			t.Errorf("the probe's message lacks %q: %s", want, msg)
		}
	}
}
