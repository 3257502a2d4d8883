package workers

import (
	"context"
	"errors"
)

// Run runs the worker until ctx is done. (Placeholder until issue 4 lands.)
func Run(ctx context.Context, cfg Config) error {
	return errors.New("worker: not built yet")
}
