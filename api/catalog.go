package api

import (
	"net/http"

	"github.com/labstack/echo/v4"

	"github.com/quantix/cloudimages/catalog"
	"github.com/quantix/cloudimages/fault"
)

func (s *Server) listCatalog(c echo.Context) error {
	return c.JSON(http.StatusOK, listOf(s.catalog.Entries()))
}

func (s *Server) getCatalogEntry(c echo.Context) error {
	e, err := s.catalogEntry(c.Param("id"))
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, e)
}

// catalogEntry returns an entry, or catalog_entry_not_found naming some
// of the entries there are.
func (s *Server) catalogEntry(id string) (catalog.Entry, error) {
	e, ok := s.catalog.Get(id)
	if !ok {
		return e, apiErr(fault.CatalogEntryNotFound, "no catalog entry %q: GET /v1/catalog lists them; some are: %s", id, some(s.catalog.IDs(), 10))
	}
	return e, nil
}
