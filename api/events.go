package api

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/quantix/cloudimages/store"
)

// imageEvents streams snapshots of an image as Server-Sent Events: one at
// once, then one whenever it changes and at least one a second while it
// downloads or verifies, and the last one when it is terminal; then the
// stream ends. An idle stream gets a comment line now and then so proxies
// keep it open. Reading the store every EventInterval (0.5 s) per stream
// is cheap (a read by primary key; the worker writes progress about once
// a second, at each answer of the agent's long-poll); a client that goes
// away ends the loop at once.
func (s *Server) imageEvents(c echo.Context) error {
	ctx := c.Request().Context()
	img, err := s.image(ctx, c.Param("id"))
	if err != nil {
		return err
	}
	w := c.Response()
	h := w.Header()
	h.Set(echo.HeaderContentType, "text/event-stream")
	h.Set(echo.HeaderCacheControl, "no-cache")
	h.Set("X-Accel-Buffering", "no") // nginx: do not buffer the stream
	w.WriteHeader(http.StatusOK)
	s.metrics.streams.Inc()
	defer s.metrics.streams.Dec()

	tick := time.NewTicker(s.opts.EventInterval)
	defer tick.Stop()
	var last []byte
	lastWrite := time.Now()
	for seq := 1; ; seq++ {
		data, err := json.Marshal(viewImage(img))
		if err != nil {
			return err
		}
		moving := img.Status == store.StatusDownloading || img.Status == store.StatusVerifying || img.Status == store.StatusConverting
		switch {
		case !bytes.Equal(data, last) || moving:
			_, err = fmt.Fprintf(w, "event: image\nid: %d\ndata: %s\n\n", seq, data)
			last, lastWrite = data, time.Now()
		case time.Since(lastWrite) >= s.opts.HeartbeatInterval:
			_, err = fmt.Fprint(w, ": keep-alive\n\n")
			lastWrite = time.Now()
		}
		if err != nil {
			return nil // the client went away
		}
		w.Flush()
		if img.Terminal() {
			return nil
		}
		select {
		case <-ctx.Done():
			return nil
		case <-s.closing:
			return nil
		case <-tick.C:
		}
		next, err := s.store.Image(ctx, img.ID)
		switch {
		case ctx.Err() != nil:
			return nil
		case err != nil:
			// Deleted, or the database is away: say so and end; the
			// client can follow again.
			s.log.Warn("events stream ends", "image_id", img.ID, "error", err)
			return nil
		}
		img = next
	}
}
