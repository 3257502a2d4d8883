package api

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
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
		var eb ErrorBody
		if json.Unmarshal(raw, &eb) == nil && eb.Error.Code != "" {
			return status, &fault.Error{Code: eb.Error.Code, Message: eb.Error.Message}
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

// CreateNode registers a node whose agent listens at address.
func (c *Client) CreateNode(ctx context.Context, id, address string) (Node, int, error) {
	var n Node
	status, err := c.Call(ctx, http.MethodPost, "/v1/nodes", map[string]any{"id": id, "name": id, "address": address}, &n)
	return n, status, err
}

// Node returns a node.
func (c *Client) Node(ctx context.Context, id string) (Node, error) {
	var n Node
	_, err := c.Call(ctx, http.MethodGet, "/v1/nodes/"+url.PathEscape(id), nil, &n)
	return n, err
}

// Nodes returns every node.
func (c *Client) Nodes(ctx context.Context) ([]Node, error) {
	var l list[Node]
	_, err := c.Call(ctx, http.MethodGet, "/v1/nodes", nil, &l)
	return l.Items, err
}

// CreatePool registers a pool of type typ ("local", "nfs", …) on nodeIDs.
func (c *Client) CreatePool(ctx context.Context, id, typ string, shared bool, nodeIDs []string) (Pool, int, error) {
	var p Pool
	body := map[string]any{"id": id, "name": id, "type": typ, "shared": shared, "node_ids": nodeIDs}
	status, err := c.Call(ctx, http.MethodPost, "/v1/pools", body, &p)
	return p, status, err
}

// Pool returns a pool.
func (c *Client) Pool(ctx context.Context, id string) (Pool, error) {
	var p Pool
	_, err := c.Call(ctx, http.MethodGet, "/v1/pools/"+url.PathEscape(id), nil, &p)
	return p, err
}

// CreateImage starts a download; req is the contract's image request
// (catalog_id or url, pool_id, …).
func (c *Client) CreateImage(ctx context.Context, req any) (Image, int, error) {
	var img Image
	status, err := c.Call(ctx, http.MethodPost, "/v1/images", req, &img)
	return img, status, err
}

// Image returns an image.
func (c *Client) Image(ctx context.Context, id string) (Image, error) {
	var img Image
	_, err := c.Call(ctx, http.MethodGet, "/v1/images/"+url.PathEscape(id), nil, &img)
	return img, err
}

// Images returns the images that query selects, e.g. url.Values{"pool_id": {"shared"}}.
func (c *Client) Images(ctx context.Context, query url.Values) ([]Image, error) {
	var l list[Image]
	path := "/v1/images"
	if len(query) > 0 {
		path += "?" + query.Encode()
	}
	_, err := c.Call(ctx, http.MethodGet, path, nil, &l)
	return l.Items, err
}

// DeleteImage cancels a download or removes a READY image.
func (c *Client) DeleteImage(ctx context.Context, id string) error {
	_, err := c.Call(ctx, http.MethodDelete, "/v1/images/"+url.PathEscape(id), nil, nil)
	return err
}
