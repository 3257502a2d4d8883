package main

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"time"

	"github.com/quantix/cloudimages/api"
)

// apiClient is the REST API's client with many idle connections, for the
// bench's parallel calls, and the bench's wait on top.
type apiClient struct {
	*api.Client
}

func newAPIClient(base string) *apiClient {
	return &apiClient{&api.Client{BaseURL: base, HTTP: &http.Client{
		Timeout:   30 * time.Second,
		Transport: &http.Transport{MaxIdleConnsPerHost: 256},
	}}}
}

// errText is a failed image's error as one line.
func errText(img api.Image) string {
	if img.Error == nil {
		return ""
	}
	return img.Error.Code + ": " + img.Error.Message
}

func (c *apiClient) images(ctx context.Context, poolID string) ([]api.Image, error) {
	return c.Images(ctx, url.Values{"pool_id": {poolID}})
}

// waitImage polls an image every `every` until it is terminal, and
// returns it with the time its terminal status was first seen.
func (c *apiClient) waitImage(ctx context.Context, id string, every time.Duration) (api.Image, time.Time, error) {
	for {
		img, err := c.Image(ctx, id)
		if err == nil && img.Terminal() {
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
