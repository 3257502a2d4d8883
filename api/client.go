package api

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/quantix/cloudimages/fault"
)

// Client is a small JSON client of this REST API: `cloudimages dev` uses it
// to register its nodes and pools, and so do the tests and the benchmarks.
type Client struct {
	BaseURL string       // e.g. http://127.0.0.1:8080
	Token   string       // sent as a bearer token when set
	HTTP    *http.Client // http.DefaultClient when nil
	Timeout time.Duration
}

// Do sends in as the JSON body (none when nil) and decodes the JSON answer,
// whatever its status, into out (when non-nil). The error is for a request
// that got no answer or an answer that is not JSON; the status is the
// caller's to judge.
func (c *Client) Do(ctx context.Context, method, path string, in, out any) (int, error) {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return 0, err
		}
		body = bytes.NewReader(b)
	}
	timeout := c.Timeout
	if timeout <= 0 {
		timeout = 30 * time.Second
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, c.BaseURL+path, body)
	if err != nil {
		return 0, err
	}
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if c.Token != "" {
		req.Header.Set("Authorization", "Bearer "+c.Token)
	}
	hc := c.HTTP
	if hc == nil {
		hc = http.DefaultClient
	}
	resp, err := hc.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		return resp.StatusCode, err
	}
	if out != nil && len(raw) > 0 {
		if err := json.Unmarshal(raw, out); err != nil {
			return resp.StatusCode, fmt.Errorf("%s %s: %d, decode %q: %w", method, path, resp.StatusCode, raw, err)
		}
	}
	return resp.StatusCode, nil
}

// Call is Do for callers that want success or an error: an answer of 400
// or more is returned as the *fault.Error of its body, and out is filled
// only from a successful answer.
func (c *Client) Call(ctx context.Context, method, path string, in, out any) (int, error) {
	var raw json.RawMessage
	status, err := c.Do(ctx, method, path, in, &raw)
	if err != nil {
		return status, err
	}
	if status >= 400 {
		var eb fault.Body
		if json.Unmarshal(raw, &eb) == nil && eb.Error != nil {
			return status, eb.Error
		}
		return status, fmt.Errorf("%s %s: %d %s", method, path, status, bytes.TrimSpace(raw))
	}
	if out != nil && len(raw) > 0 {
		if err := json.Unmarshal(raw, out); err != nil {
			return status, fmt.Errorf("%s %s: %w", method, path, err)
		}
	}
	return status, nil
}
