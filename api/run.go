package api

import (
	"context"
	"errors"
)

// Run serves the API until ctx is done. (Placeholder until issue 5 lands.)
func Run(ctx context.Context, cfg Config) error {
	return errors.New("api: not built yet")
}
