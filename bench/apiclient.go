package main

import (
	"context"
	"fmt"
	"net/http"
	"time"

	"github.com/quantix/cloudimages/api"
)

// apiClient speaks the contract's REST API: the few calls the bench needs.
type apiClient struct {
	api *api.Client
}

func newAPIClient(base string) *apiClient {
	return &apiClient{api: &api.Client{BaseURL: base, HTTP: &http.Client{
		Timeout:   30 * time.Second,
		Transport: &http.Transport{MaxIdleConnsPerHost: 256},
	}}}
}

// image is the part of the contract's Image the bench reads.
type image struct {
	ID         string `json:"id"`
	Status     string `json:"status"`
	NodeID     string `json:"node_id"`
	PoolID     string `json:"pool_id"`
	Path       string `json:"path"`
	WorkflowID string `json:"workflow_id"`
	Error      *struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	} `json:"error"`
	Progress *struct {
		BytesDone int64 `json:"bytes_done"`
	} `json:"progress"`
}

func (i image) terminal() bool {
	return i.Status == "READY" || i.Status == "FAILED" || i.Status == "CANCELLED"
}

func (i image) errText() string {
	if i.Error == nil {
		return ""
	}
	return i.Error.Code + ": " + i.Error.Message
}

func (c *apiClient) do(ctx context.Context, method, path string, in, out any) (int, error) {
	return c.api.Call(ctx, method, path, in, out)
}

func (c *apiClient) createImage(ctx context.Context, req map[string]any) (image, int, error) {
	var img image
	code, err := c.do(ctx, http.MethodPost, "/v1/images", req, &img)
	return img, code, err
}

func (c *apiClient) image(ctx context.Context, id string) (image, error) {
	var img image
	_, err := c.do(ctx, http.MethodGet, "/v1/images/"+id, nil, &img)
	return img, err
}

func (c *apiClient) images(ctx context.Context, poolID string) ([]image, error) {
	var out struct {
		Items []image `json:"items"`
	}
	_, err := c.do(ctx, http.MethodGet, "/v1/images?pool_id="+poolID, nil, &out)
	return out.Items, err
}

func (c *apiClient) deleteImage(ctx context.Context, id string) error {
	_, err := c.do(ctx, http.MethodDelete, "/v1/images/"+id, nil, nil)
	return err
}

// waitImage polls an image every `every` until it is terminal, and
// returns it with the time its terminal status was first seen.
func (c *apiClient) waitImage(ctx context.Context, id string, every time.Duration) (image, time.Time, error) {
	for {
		img, err := c.image(ctx, id)
		if err == nil && img.terminal() {
			return img, time.Now(), nil
		}
		select {
		case <-ctx.Done():
			if err == nil {
				err = fmt.Errorf("image %s still %s", id, img.Status)
			}
			return img, time.Time{}, fmt.Errorf("%w (%v)", ctx.Err(), err)
		case <-time.After(every):
		}
	}
}
