package api

import (
	"errors"
	"net/http"

	"github.com/labstack/echo/v4"

	"github.com/quantix/cloudimages/fault"
	"github.com/quantix/cloudimages/store"
)

type nodeRequest struct {
	ID      string `json:"id"`
	Name    string `json:"name"`
	Address string `json:"address"`
}

func (s *Server) createNode(c echo.Context) error {
	var req nodeRequest
	if err := decode(c, &req); err != nil {
		return err
	}
	if req.ID == "" {
		req.ID = newID("node-")
	}
	if err := checkID("id", req.ID); err != nil {
		return err
	}
	if err := checkText("name", req.Name, 200); err != nil {
		return err
	}
	if err := checkAddress(req.Address); err != nil {
		return err
	}
	if req.Name == "" {
		req.Name = req.ID
	}
	n := &store.Node{ID: req.ID, Name: req.Name, Address: req.Address}
	if err := s.store.CreateNode(c.Request().Context(), n); err != nil {
		if errors.Is(err, store.ErrExists) {
			return apiErr(fault.Conflict, "node %q already exists: pick another id, or delete it first", req.ID)
		}
		return err
	}
	s.log.Info("node registered", "node_id", n.ID, "address", n.Address)
	s.checkNodesSoon()
	return c.JSON(http.StatusCreated, viewNode(*n))
}

func (s *Server) listNodes(c echo.Context) error {
	ns, err := s.store.Nodes(c.Request().Context())
	if err != nil {
		return err
	}
	out := make([]Node, 0, len(ns))
	for _, n := range ns {
		out = append(out, viewNode(n))
	}
	return c.JSON(http.StatusOK, listOf(out))
}

func (s *Server) getNode(c echo.Context) error {
	n, err := s.node(c, c.Param("id"))
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, viewNode(n))
}

func (s *Server) node(c echo.Context, id string) (store.Node, error) {
	n, err := s.store.Node(c.Request().Context(), id)
	if errors.Is(err, store.ErrNotFound) {
		return n, apiErr(fault.NotFound, "node %q does not exist: GET /v1/nodes lists the nodes", id)
	}
	return n, err
}

// deleteNode removes a node and its pool assignments. While a download
// runs on the node it is 409: cancel the download or wait for it.
func (s *Server) deleteNode(c echo.Context) error {
	ctx := c.Request().Context()
	id := c.Param("id")
	if _, err := s.node(c, id); err != nil {
		return err
	}
	live, err := s.store.Images(ctx, store.ImageFilter{Live: true})
	if err != nil {
		return err
	}
	var busy []string
	for _, img := range live {
		if img.NodeID == id || img.ProgressNodeID == id {
			busy = append(busy, img.ID)
		}
	}
	if len(busy) > 0 {
		return apiErr(fault.Conflict, "node %q is downloading image(s) %s: cancel them (DELETE /v1/images/{id}) or wait until they finish", id, some(busy, 5))
	}
	if err := s.store.DeleteNode(ctx, id); err != nil {
		if errors.Is(err, store.ErrNotFound) {
			return apiErr(fault.NotFound, "node %q does not exist", id)
		}
		return err
	}
	s.log.Info("node deleted", "node_id", id)
	return c.NoContent(http.StatusNoContent)
}
