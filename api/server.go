package api

import (
	"crypto/tls"
	"errors"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/labstack/echo/v4/middleware"
	"go.temporal.io/sdk/client"

	"github.com/quantix/cloudimages/catalog"
	"github.com/quantix/cloudimages/store"
	"github.com/quantix/cloudimages/web"
)

// bodyLimitText is the largest request body the API reads; every request
// it takes is a few hundred bytes.
const bodyLimitText = "1M"

// Deps are what the API works with. Store, Catalog and Temporal are
// required; the rest have defaults.
type Deps struct {
	Store    *store.Store
	Catalog  *catalog.Catalog
	Temporal client.Client
	Log      *slog.Logger // nil uses slog.Default()
	Options  Options
}

// Options tune the API; zero fields take the defaults.
type Options struct {
	APIToken          string // bearer token for /v1/ routes; empty: no auth
	TemporalAddress   string // for messages
	TemporalNamespace string // for messages and the UI's links
	TemporalWebURL    string // for the UI's links
	Version           string

	// AgentTLS, when set, holds the CA of the agents' certificates.
	AgentTLS *tls.Config
	// NodeToken is the cluster secret: the API mints from it the tokens,
	// scoped to one upload, with which it streams uploads to the agents.
	NodeToken string
	// UploadTTL is how long an upload may receive nothing before it
	// expires (default 24h).
	UploadTTL time.Duration

	// TemporalTimeout bounds every call to Temporal (default 5s).
	TemporalTimeout time.Duration
	// RemoveTimeout bounds how long DELETE of a READY image waits for the
	// workflow that removes its file (default 30s).
	RemoveTimeout time.Duration
	// EventInterval is how often an events stream looks at its image
	// (default 0.5s: with the watch writing progress about once a second,
	// what a stream shows is at most about a second old).
	EventInterval time.Duration
	// HeartbeatInterval is how often an idle events stream sends a comment
	// line, so proxies keep it open (default 15s).
	HeartbeatInterval time.Duration
}

func (o Options) withDefaults() Options {
	def := func(d *time.Duration, v time.Duration) {
		if *d == 0 {
			*d = v
		}
	}
	def(&o.TemporalTimeout, 5*time.Second)
	def(&o.RemoveTimeout, 30*time.Second)
	def(&o.EventInterval, 500*time.Millisecond)
	def(&o.HeartbeatInterval, 15*time.Second)
	def(&o.UploadTTL, 24*time.Hour)
	if o.TemporalNamespace == "" {
		o.TemporalNamespace = "default"
	}
	if o.Version == "" {
		o.Version = "dev"
	}
	return o
}

// Server is the REST API and the web UI. Close stops its background work.
type Server struct {
	store    *store.Store
	catalog  *catalog.Catalog
	temporal client.Client
	opts     Options
	log      *slog.Logger
	echo     *echo.Echo
	metrics  *metrics

	closing   chan struct{} // closed by Close: events streams end
	relays    *relays       // PATCH bodies relayed on hijacked connections
	closeOnce sync.Once
	wg        sync.WaitGroup
}

// New builds the API. It talks to node agents only to stream uploads to
// them: the worker checks their health and removes files; the API reads
// what it recorded.
func New(deps Deps) (*Server, error) {
	switch {
	case deps.Store == nil:
		return nil, errors.New("api: a store is required")
	case deps.Catalog == nil:
		return nil, errors.New("api: a catalog is required")
	case deps.Temporal == nil:
		return nil, errors.New("api: a Temporal client is required")
	}
	log := deps.Log
	if log == nil {
		log = slog.Default()
	}
	s := &Server{
		store:    deps.Store,
		catalog:  deps.Catalog,
		temporal: deps.Temporal,
		opts:     deps.Options.withDefaults(),
		log:      log.With("component", "api"),
		closing:  make(chan struct{}),
		relays:   newRelays(),
	}
	s.metrics = newMetrics(s)
	s.echo = s.routes()
	return s, nil
}

// Handler is the API and UI as an http.Handler.
func (s *Server) Handler() http.Handler { return s.echo }

// Close ends every open events stream and waits for background work. It
// leaves uploads alone: a PATCH streamed through the HTTP server is waited
// for by its Shutdown, a relayed one by serve (relays.drain).
func (s *Server) Close() {
	s.closeOnce.Do(func() { close(s.closing) })
	s.wg.Wait()
}

func (s *Server) routes() *echo.Echo {
	e := echo.New()
	e.HideBanner, e.HidePort = true, true
	e.HTTPErrorHandler = s.handleError
	e.Use(
		middleware.RequestID(),
		s.observe,
		middleware.RecoverWithConfig(middleware.RecoverConfig{
			DisablePrintStack: true,
			LogErrorFunc: func(c echo.Context, err error, stack []byte) error {
				s.log.Error("panic in handler", "method", c.Request().Method, "path", c.Request().URL.Path,
					"request_id", c.Response().Header().Get(echo.HeaderXRequestID), "error", err, "stack", string(stack))
				return err
			},
		}),
		middleware.BodyLimitWithConfig(middleware.BodyLimitConfig{Limit: bodyLimitText, Skipper: isUploadBody}),
	)

	e.GET("/healthz", s.healthz)
	e.GET("/metrics", echo.WrapHandler(s.metrics.handler()))

	v1 := e.Group("/v1", s.sameOrigin, s.auth)
	v1.GET("/openapi.json", s.openAPI)
	v1.GET("/settings", s.settings)

	v1.POST("/nodes", s.createNode)
	v1.GET("/nodes", s.listNodes)
	v1.GET("/nodes/:id", s.getNode)
	v1.DELETE("/nodes/:id", s.deleteNode)

	v1.POST("/pools", s.createPool)
	v1.GET("/pools", s.listPools)
	v1.GET("/pools/:id", s.getPool)
	v1.DELETE("/pools/:id", s.deletePool)

	v1.GET("/catalog", s.listCatalog)
	v1.GET("/catalog/:id", s.getCatalogEntry)

	v1.POST("/images", s.createImage)
	v1.GET("/images", s.listImages)
	v1.GET("/images/:id", s.getImage)
	v1.DELETE("/images/:id", s.deleteImage)
	v1.GET("/images/:id/events", s.imageEvents)
	v1.PATCH("/images/:id", s.patchImage)

	v1.POST("/subscriptions", s.createSubscription)
	v1.GET("/subscriptions", s.listSubscriptions)
	v1.GET("/subscriptions/:id", s.getSubscription)
	v1.PATCH("/subscriptions/:id", s.patchSubscription)
	v1.DELETE("/subscriptions/:id", s.deleteSubscription)
	v1.POST("/subscriptions/:id/check", s.checkNow)
	v1.GET("/subscriptions/:id/events", s.subscriptionEvents)

	v1.POST("/distributions", s.createDistribution)
	v1.GET("/distributions", s.listDistributions)
	v1.GET("/distributions/:id", s.getDistribution)
	v1.DELETE("/distributions/:id", s.deleteDistribution)

	s.uploadRoutes(v1)

	// Unknown /v1/ routes answer JSON rather than reach the UI: 405 with
	// Allow when the path exists for other methods, 404 otherwise. (Echo
	// would let a not-found route win over its own 405.)
	e.RouteNotFound("/v1/*", func(c echo.Context) error {
		if allow := allowedMethods(e, c.Request().URL.Path); len(allow) > 0 {
			c.Response().Header().Set(echo.HeaderAllow, strings.Join(allow, ", "))
			return echo.ErrMethodNotAllowed
		}
		return echo.ErrNotFound
	}, s.sameOrigin, s.auth)
	// Everything else is the web UI.
	ui := echo.WrapHandler(jsonNotFound(web.Handler()))
	e.GET("/*", ui)
	e.HEAD("/*", ui)
	return e
}

// isUploadBody reports whether a request is a PATCH of an upload, whose
// body is the image itself: it is streamed to a node, never read whole.
func isUploadBody(c echo.Context) bool {
	r := c.Request()
	return r.Method == http.MethodPatch && strings.HasPrefix(r.URL.Path, "/v1/uploads/")
}
