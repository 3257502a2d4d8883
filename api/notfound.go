package api

import (
	"net/http"
	"sort"
	"strings"

	"github.com/labstack/echo/v4"
)

// allowedMethods lists the methods of the API routes that match path.
func allowedMethods(e *echo.Echo, path string) []string {
	var out []string
	for _, r := range e.Routes() {
		if r.Method == echo.RouteNotFound || isUIRoute(r.Path) || !matchRoute(r.Path, path) {
			continue
		}
		out = append(out, r.Method)
	}
	sort.Strings(out)
	return out
}

// matchRoute reports whether path fits an Echo route pattern such as
// /v1/images/:id/events.
func matchRoute(pattern, path string) bool {
	ps, xs := strings.Split(pattern, "/"), strings.Split(strings.TrimSuffix(path, "/"), "/")
	if len(ps) != len(xs) {
		return false
	}
	for i := range ps {
		if strings.HasPrefix(ps[i], ":") && xs[i] != "" {
			continue
		}
		if ps[i] != xs[i] {
			return false
		}
	}
	return true
}

// isUIRoute tells the routes of the web UI from the API's own.
func isUIRoute(path string) bool {
	return path == "/*" || strings.HasPrefix(path, "/v1/*")
}

// jsonNotFound answers the UI's 404s with the contract's JSON error.
func jsonNotFound(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h.ServeHTTP(&notFoundWriter{ResponseWriter: w, method: r.Method}, r)
	})
}

type notFoundWriter struct {
	http.ResponseWriter
	method   string
	notFound bool
}

func (w *notFoundWriter) WriteHeader(status int) {
	if status != http.StatusNotFound {
		w.ResponseWriter.WriteHeader(status)
		return
	}
	w.notFound = true
	h := w.Header()
	h.Del("Content-Length")
	h.Set("Content-Type", "application/json")
	w.ResponseWriter.WriteHeader(status)
	if w.method != http.MethodHead {
		_, _ = w.ResponseWriter.Write([]byte(`{"error":{"code":"not_found","message":"no such page or route: the UI is at /, the API under /v1/ (see GET /v1/openapi.json)"}}` + "\n"))
	}
}

func (w *notFoundWriter) Write(b []byte) (int, error) {
	if w.notFound {
		return len(b), nil // the file server's plain-text 404 is replaced
	}
	return w.ResponseWriter.Write(b)
}
