package main

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"time"

	"github.com/quantix/cloudimages/catalog"
)

// builtinMirror is the URL of the built-in catalog's first image.
func builtinMirror() string {
	if len(catalog.Builtin) == 0 {
		return ""
	}
	return catalog.Builtin[0].URL
}

// probeMirror checks, in the background, whether this machine reaches the
// host of rawURL (dev passes the built-in catalog's first mirror), so that
// the welcome can say plainly when it does not, instead of leaving the
// first download to fail. It yields "" when the host answers, else what
// is wrong.
func probeMirror(ctx context.Context, rawURL string) <-chan string {
	out := make(chan string, 1)
	go func() {
		u, err := url.Parse(rawURL)
		if err != nil || u.Host == "" {
			out <- ""
			return
		}
		ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		req, err := http.NewRequestWithContext(ctx, http.MethodHead, u.Scheme+"://"+u.Host+"/", nil)
		if err != nil {
			out <- ""
			return
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			out <- fmt.Sprintf("this machine cannot reach %s (%v): downloads from the built-in catalog will fail until it can; "+
				"upload an image you have instead (bin/cloudimages images upload FILE --pool local-1 --wait), "+
				"or pull a URL on a mirror you can reach (a mirror on your LAN needs --allow-private-networks)", u.Host, unwrap(err))
			return
		}
		resp.Body.Close()
		out <- ""
	}()
	return out
}

// unwrap drops the *url.Error wrapper, whose message repeats the URL.
func unwrap(err error) error {
	if ue, ok := err.(*url.Error); ok {
		return ue.Err
	}
	return err
}
