package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/quantix/cloudimages/api"
	"github.com/quantix/cloudimages/fault"
)

// maxStreamLosses is how many times in a row the events stream may fail
// (the API restarting, say) before following gives up; a second apart.
const maxStreamLosses = 30

// snapshot is one event of an image's stream: the image as the API sent
// it, and decoded.
type snapshot struct {
	raw json.RawMessage
	img api.Image
}

// follow reads the image's events (GET /v1/images/{id}/events) and hands
// each snapshot to show until the image is terminal, which it returns. A
// stream that breaks before that is opened again; an API error (the image
// is gone, the token is wrong) ends following.
func (c *conn) follow(ctx context.Context, id string, show func(snapshot)) (snapshot, error) {
	var last snapshot
	losses := 0
	for {
		err := c.stream(ctx, id, func(s snapshot) {
			last, losses = s, 0
			show(s)
		})
		switch {
		case last.img.ID != "" && last.img.Terminal():
			return last, nil
		case ctx.Err() != nil:
			return last, ctx.Err()
		}
		if _, ok := fault.As(err); ok {
			return last, err
		}
		if losses++; losses > maxStreamLosses {
			if err == nil {
				err = errors.New("the stream kept ending before the image finished")
			}
			return last, fmt.Errorf("lost the events of image %s: %w", id, c.explain(err))
		}
		select {
		case <-ctx.Done():
			return last, ctx.Err()
		case <-time.After(time.Second):
		}
	}
}

// stream reads one events stream to its end, calling each with every
// snapshot.
func (c *conn) stream(ctx context.Context, id string, each func(snapshot)) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.BaseURL+imageURL(id)+"/events", nil)
	if err != nil {
		return err
	}
	req.Header.Set("Accept", "text/event-stream")
	if c.Token != "" {
		req.Header.Set("Authorization", "Bearer "+c.Token)
	}
	hc := c.HTTP
	if hc == nil {
		hc = http.DefaultClient
	}
	resp, err := hc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return errorOf(resp)
	}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 4<<20)
	var data []byte
	for sc.Scan() {
		line := sc.Bytes()
		switch {
		case len(line) == 0 && len(data) > 0:
			s := snapshot{raw: data}
			if err := json.Unmarshal(data, &s.img); err != nil {
				return fmt.Errorf("an event of image %s is not an image: %w", id, err)
			}
			each(s)
			data = nil
		case bytes.HasPrefix(line, []byte("data:")):
			// The server sends one data line an event; several are joined
			// with newlines, as the SSE format says.
			if data != nil {
				data = append(data, '\n')
			}
			data = append(data, bytes.TrimPrefix(bytes.TrimPrefix(line, []byte("data:")), []byte(" "))...)
		}
	}
	return sc.Err()
}

// errorOf is the error of an answer that is not a success: the API's
// code and message when it sent them.
func errorOf(resp *http.Response) error {
	raw, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	var eb api.ErrorBody
	if json.Unmarshal(raw, &eb) == nil && eb.Error.Code != "" {
		return &fault.Error{Code: eb.Error.Code, Message: eb.Error.Message}
	}
	return fmt.Errorf("%s %s: %s %s", resp.Request.Method, resp.Request.URL.Path, resp.Status, strings.TrimSpace(string(raw)))
}
