package api

import (
	"errors"
	"net/http"

	"github.com/labstack/echo/v4"

	"github.com/quantix/cloudimages/fault"
	"github.com/quantix/cloudimages/store"
	"github.com/quantix/cloudimages/transferwindow"
)

type poolRequest struct {
	ID      string   `json:"id"`
	Name    string   `json:"name"`
	Type    string   `json:"type"`
	Shared  *bool    `json:"shared"`
	NodeIDs []string `json:"node_ids"`
	// ImageFormat is the format the pool's images are converted to ("raw"
	// or "qcow2"); "" keeps what the vendor ships.
	ImageFormat string `json:"image_format"`
	// TransferWindows ("22:00-06:00", …) in TimeZone (IANA, "" is UTC)
	// are when the pool's downloads may transfer; none: the worker's
	// cluster-wide default, if any, else any time.
	TransferWindows []string `json:"transfer_windows"`
	TimeZone        string   `json:"time_zone"`
}

func (s *Server) createPool(c echo.Context) error {
	ctx := c.Request().Context()
	var req poolRequest
	if err := decode(c, &req); err != nil {
		return err
	}
	if err := checkPool(&req); err != nil {
		return err
	}
	if err := s.checkNodesExist(c, req.NodeIDs); err != nil {
		return err
	}
	p := &store.Pool{ID: req.ID, Name: req.Name, Type: req.Type, Shared: *req.Shared, ImageFormat: req.ImageFormat,
		TransferWindows: req.TransferWindows, TimeZone: req.TimeZone}
	err := s.store.CreatePool(ctx, p, req.NodeIDs)
	switch {
	case errors.Is(err, store.ErrExists):
		return apiErr(fault.Conflict, "pool %q already exists: pick another id, or delete it first", req.ID)
	case errors.Is(err, store.ErrNotFound):
		return apiErr(fault.NotFound, "%v: register the node first (POST /v1/nodes)", err)
	case err != nil:
		return err
	}
	s.log.Info("pool created", "pool_id", p.ID, "type", p.Type, "shared", p.Shared, "image_format", p.ImageFormat, "nodes", req.NodeIDs,
		"transfer_windows", req.TransferWindows, "time_zone", req.TimeZone)
	return c.JSON(http.StatusCreated, viewPool(*p, nil))
}

func checkPool(req *poolRequest) error {
	if err := checkID("id", req.ID); err != nil {
		return err
	}
	if err := checkText("name", req.Name, 200); err != nil {
		return err
	}
	if req.Name == "" {
		req.Name = req.ID
	}
	switch req.Type {
	case "nfs", "local":
	case "":
		return apiErr(fault.InvalidRequest, "type is missing: \"nfs\" (a directory every node of the pool sees) or \"local\" (each node's own disk)")
	default:
		return apiErr(fault.InvalidRequest, "type %q: want \"nfs\" or \"local\"", req.Type)
	}
	if req.Shared == nil {
		shared := req.Type == "nfs"
		req.Shared = &shared
	}
	if *req.Shared && req.Type == "local" {
		return apiErr(fault.InvalidRequest, "a local pool cannot be shared: each node has its own directory (use type \"nfs\" for a shared one)")
	}
	switch req.ImageFormat {
	case "", "raw", "qcow2":
	default:
		return apiErr(fault.InvalidRequest, "image_format %q: want \"raw\" or \"qcow2\" (images are converted to it), or leave it out to keep the format the vendor ships", req.ImageFormat)
	}
	if err := checkWindows(req); err != nil {
		return err
	}
	seen := map[string]bool{}
	for _, id := range req.NodeIDs {
		if err := checkID("node_ids entry", id); err != nil {
			return err
		}
		if seen[id] {
			return apiErr(fault.InvalidRequest, "node_ids lists %q twice", id)
		}
		seen[id] = true
	}
	if req.NodeIDs == nil {
		req.NodeIDs = []string{}
	}
	return nil
}

// checkWindows checks the transfer windows and their zone, and writes
// them as they are parsed ("22:00-06:00").
func checkWindows(req *poolRequest) error {
	if len(req.TransferWindows) > 48 {
		return apiErr(fault.InvalidRequest, "transfer_windows lists %d windows: give at most 48", len(req.TransferWindows))
	}
	s, err := transferwindow.Parse(req.TransferWindows, req.TimeZone)
	if err != nil {
		return apiErr(fault.InvalidRequest, "%v", err)
	}
	req.TransferWindows = s.Strings()
	return nil
}

// checkNodesExist names the unknown nodes and the ones that exist.
func (s *Server) checkNodesExist(c echo.Context, ids []string) error {
	if len(ids) == 0 {
		return nil
	}
	all, err := s.store.Nodes(c.Request().Context())
	if err != nil {
		return err
	}
	known := map[string]bool{}
	var names []string
	for _, n := range all {
		known[n.ID] = true
		names = append(names, n.ID)
	}
	var missing []string
	for _, id := range ids {
		if !known[id] {
			missing = append(missing, id)
		}
	}
	if len(missing) > 0 {
		return apiErr(fault.NotFound, "node_ids: no node %s: register it first (POST /v1/nodes); the nodes are: %s", some(missing, 5), some(names, 20))
	}
	return nil
}

func (s *Server) listPools(c echo.Context) error {
	ps, err := s.store.Pools(c.Request().Context())
	if err != nil {
		return err
	}
	nodes, err := s.store.Nodes(c.Request().Context())
	if err != nil {
		return err
	}
	out := make([]Pool, 0, len(ps))
	for _, p := range ps {
		out = append(out, viewPool(p, nodes))
	}
	return c.JSON(http.StatusOK, listOf(out))
}

func (s *Server) getPool(c echo.Context) error {
	p, err := s.pool(c, c.Param("id"))
	if err != nil {
		return err
	}
	nodes, err := s.store.Nodes(c.Request().Context())
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, viewPool(p, nodes))
}

// pool returns a pool, or pool_not_found naming the pools that exist.
func (s *Server) pool(c echo.Context, id string) (store.Pool, error) {
	ctx := c.Request().Context()
	p, err := s.store.Pool(ctx, id)
	if !errors.Is(err, store.ErrNotFound) {
		return p, err
	}
	all, lerr := s.store.Pools(ctx)
	if lerr != nil {
		return p, lerr
	}
	ids := make([]string, 0, len(all))
	for _, q := range all {
		ids = append(ids, q.ID)
	}
	if len(ids) == 0 {
		return p, apiErr(fault.PoolNotFound, "pool %q does not exist, and there are no pools yet: create one with POST /v1/pools", id)
	}
	return p, apiErr(fault.PoolNotFound, "pool %q does not exist; the pools are: %s", id, some(ids, 20))
}

func (s *Server) deletePool(c echo.Context) error {
	id := c.Param("id")
	err := s.store.DeletePool(c.Request().Context(), id)
	switch {
	case errors.Is(err, store.ErrNotFound):
		if _, perr := s.pool(c, id); perr != nil {
			return perr // pool_not_found, naming the pools
		}
		return err
	case errors.Is(err, store.ErrInUse):
		return apiErr(fault.Conflict, "%v: delete or cancel them first (DELETE /v1/images/{id})", err)
	case err != nil:
		return err
	}
	s.log.Info("pool deleted", "pool_id", id)
	return c.NoContent(http.StatusNoContent)
}
