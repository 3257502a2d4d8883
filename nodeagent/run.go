package nodeagent

import (
	"context"
	"errors"
)

// Run serves the agent until ctx is done. (Placeholder until issue 3 lands.)
func Run(ctx context.Context, cfg Config) error {
	return errors.New("nodeagent: not built yet")
}
