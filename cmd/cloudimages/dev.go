package main

import (
	"context"
	"errors"
)

func runDev(ctx context.Context, args []string) error {
	var dataDir string
	f := newFlags("dev", "Runs everything on embedded defaults in one process tree.")
	f.string(&dataDir, "data-dir", "CLOUDIMAGES_DATA_DIR", ".data", "where the dev setup keeps its database, pools and Temporal state")
	if err := f.parse(args); err != nil {
		return err
	}
	return errors.New("dev: not built yet")
}
