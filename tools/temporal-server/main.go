// Command temporal-server runs a real Temporal server — frontend, history,
// matching and worker services in one process — on PostgreSQL, for the
// production-topology tests and for trying cloudimages against a Temporal
// like the one it meets in production, without Docker.
//
// It lives in its own Go module so that the server's many dependencies stay
// out of cloudimages' go.mod; `make temporal-server` builds it into bin/.
//
//	temporal-server setup-schema --database-url postgres://postgres@127.0.0.1:5432/temporal?sslmode=disable
//	temporal-server start        --database-url postgres://postgres@127.0.0.1:5432/temporal?sslmode=disable
//
// setup-schema creates the two databases (the store, and NAME_visibility
// for SQL advanced visibility) when missing and brings both schemas to the
// newest version the server embeds: run it before the first start and after
// an upgrade; it does nothing on a current schema. start registers the
// namespaces it is given when missing and runs until SIGINT or SIGTERM.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"go.temporal.io/api/serviceerror"
	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/server/common/auth"
	"go.temporal.io/server/common/authorization"
	"go.temporal.io/server/common/cluster"
	"go.temporal.io/server/common/config"
	"go.temporal.io/server/common/dynamicconfig"
	"go.temporal.io/server/common/log"
	"go.temporal.io/server/common/membership/static"
	"go.temporal.io/server/common/metrics"
	"go.temporal.io/server/common/persistence/sql/sqlplugin/postgresql"
	"go.temporal.io/server/common/primitives"
	"go.temporal.io/server/temporal"
	"go.temporal.io/server/tools/common/schema"
	sqltool "go.temporal.io/server/tools/sql"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/types/known/durationpb"
)

const usage = `temporal-server runs Temporal (server ` + serverVersion + `) on PostgreSQL.

Usage:
  temporal-server setup-schema [flags]   create the databases when missing and bring both schemas up to date
  temporal-server start [flags]          run the server until SIGINT or SIGTERM

Run "temporal-server COMMAND --help" for a command's flags.
`

// serverVersion is the go.temporal.io/server version this module pins.
const serverVersion = "1.29.1"

func main() {
	if len(os.Args) < 2 {
		fmt.Fprint(os.Stderr, usage)
		os.Exit(2)
	}
	var err error
	switch os.Args[1] {
	case "setup-schema":
		err = runSetupSchema(os.Args[2:])
	case "start":
		err = runStart(os.Args[2:])
	case "-h", "--help", "help":
		fmt.Print(usage)
		return
	default:
		fmt.Fprintf(os.Stderr, "unknown command %q\n\n%s", os.Args[1], usage)
		os.Exit(2)
	}
	if errors.Is(err, flag.ErrHelp) {
		return
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "temporal-server:", err)
		os.Exit(1)
	}
}

// dbFlags are the flags both commands share: where the databases are.
type dbFlags struct {
	databaseURL string
	visibility  string
	logLevel    string
}

func (d *dbFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&d.databaseURL, "database-url", os.Getenv("TEMPORAL_DATABASE_URL"),
		"PostgreSQL URL of the server's store, postgres://USER:PASSWORD@HOST:PORT/DB (env TEMPORAL_DATABASE_URL)")
	fs.StringVar(&d.visibility, "visibility-database", os.Getenv("TEMPORAL_VISIBILITY_DATABASE"),
		"database of SQL advanced visibility on the same server; default the store's name + \"_visibility\" (env TEMPORAL_VISIBILITY_DATABASE)")
	fs.StringVar(&d.logLevel, "log-level", envOr("TEMPORAL_LOG_LEVEL", "warn"), "debug, info, warn or error (env TEMPORAL_LOG_LEVEL)")
}

// sqlConfigs returns the SQL configuration of the store and of visibility.
func (d *dbFlags) sqlConfigs() (store, visibility *config.SQL, err error) {
	if d.databaseURL == "" {
		return nil, nil, errors.New("--database-url is required (or TEMPORAL_DATABASE_URL)")
	}
	u, err := url.Parse(d.databaseURL)
	if err != nil || (u.Scheme != "postgres" && u.Scheme != "postgresql") {
		return nil, nil, fmt.Errorf("--database-url %q: want postgres://USER:PASSWORD@HOST:PORT/DB", d.databaseURL)
	}
	name := strings.TrimPrefix(u.Path, "/")
	if name == "" {
		return nil, nil, fmt.Errorf("--database-url %q names no database", d.databaseURL)
	}
	host := u.Host
	if u.Port() == "" {
		host = net.JoinHostPort(u.Hostname(), "5432")
	}
	password, _ := u.User.Password()
	attrs := map[string]string{}
	for k, v := range u.Query() {
		attrs[k] = v[0]
	}
	// The plugin sets sslmode itself, from its TLS settings, and refuses
	// the attribute twice: a URL's sslmode becomes those settings.
	var tlsCfg *auth.TLS
	switch mode := attrs["sslmode"]; mode {
	case "", "disable":
	case "require", "verify-ca", "verify-full":
		tlsCfg = &auth.TLS{Enabled: true, EnableHostVerification: mode == "verify-full", CaFile: attrs["sslrootcert"],
			CertFile: attrs["sslcert"], KeyFile: attrs["sslkey"]}
	default:
		return nil, nil, fmt.Errorf("--database-url: sslmode %q: want disable, require, verify-ca or verify-full", mode)
	}
	for _, k := range []string{"sslmode", "sslrootcert", "sslcert", "sslkey"} {
		delete(attrs, k)
	}
	store = &config.SQL{
		PluginName: postgresql.PluginName, ConnectAddr: host, ConnectProtocol: "tcp",
		User: u.User.Username(), Password: password, DatabaseName: name, ConnectAttributes: attrs, TLS: tlsCfg,
		MaxConns: 20, MaxIdleConns: 20, MaxConnLifetime: time.Hour,
	}
	vis := *store
	vis.ConnectAttributes = attrs
	vis.DatabaseName = d.visibility
	if vis.DatabaseName == "" {
		vis.DatabaseName = name + "_visibility"
	}
	vis.MaxConns, vis.MaxIdleConns = 10, 10
	return store, &vis, nil
}

func (d *dbFlags) logger() log.Logger {
	return log.NewZapLogger(log.BuildZapLogger(log.Config{Level: d.logLevel, Format: "json"}))
}

func runSetupSchema(args []string) error {
	var d dbFlags
	fs := flag.NewFlagSet("setup-schema", flag.ContinueOnError)
	d.register(fs)
	if err := fs.Parse(args); err != nil {
		return err
	}
	store, vis, err := d.sqlConfigs()
	if err != nil {
		return err
	}
	logger := d.logger()
	for _, db := range []struct {
		cfg    *config.SQL
		schema string // the embedded versioned schema
	}{{store, "postgresql/v12/temporal"}, {vis, "postgresql/v12/visibility"}} {
		if err := setupDatabase(db.cfg, db.schema, logger); err != nil {
			return err
		}
		fmt.Printf("database %s: schema %s up to date\n", db.cfg.DatabaseName, db.schema)
	}
	return nil
}

// setupDatabase creates the database when missing (connected to the
// server's "postgres" database), creates the schema version tables, and
// applies every embedded version newer than the database's.
func setupDatabase(cfg *config.SQL, schemaName string, logger log.Logger) error {
	admin := *cfg
	if err := sqltool.DoCreateDatabase(&admin, "postgres", logger); err != nil {
		return fmt.Errorf("create database %s: %w", cfg.DatabaseName, err)
	}
	conn, err := sqltool.NewConnection(cfg, logger)
	if err != nil {
		return fmt.Errorf("connect to database %s: %w", cfg.DatabaseName, err)
	}
	defer conn.Close()
	if err := schema.NewSetupSchemaTask(conn, &schema.SetupConfig{InitialVersion: "0.0"}, logger).Run(); err != nil {
		return fmt.Errorf("set up schema versioning in %s: %w", cfg.DatabaseName, err)
	}
	if err := schema.NewUpdateSchemaTask(conn, &schema.UpdateConfig{DBName: cfg.DatabaseName, SchemaName: schemaName}, logger).Run(); err != nil {
		return fmt.Errorf("update schema of %s: %w", cfg.DatabaseName, err)
	}
	return nil
}

type startFlags struct {
	dbFlags
	listen        string
	httpPort      int
	metricsListen string
	namespaces    string
	retention     time.Duration
	shards        int
}

func runStart(args []string) error {
	var s startFlags
	fs := flag.NewFlagSet("start", flag.ContinueOnError)
	s.register(fs)
	fs.StringVar(&s.listen, "listen", envOr("TEMPORAL_LISTEN", "127.0.0.1:7233"), "host:port of the frontend's gRPC (env TEMPORAL_LISTEN); the other services take free ports on the same host")
	fs.IntVar(&s.httpPort, "http-port", 0, "port of the frontend's HTTP API; default a free one")
	fs.StringVar(&s.metricsListen, "metrics-listen", os.Getenv("TEMPORAL_METRICS_LISTEN"), "host:port to serve the server's Prometheus /metrics on; empty: none (env TEMPORAL_METRICS_LISTEN)")
	fs.StringVar(&s.namespaces, "namespace", envOr("TEMPORAL_NAMESPACE", "default"), "namespaces to register when missing, comma-separated (env TEMPORAL_NAMESPACE)")
	fs.DurationVar(&s.retention, "retention", 72*time.Hour, "retention of closed workflows in namespaces this registers")
	fs.IntVar(&s.shards, "history-shards", 4, "number of history shards; fixed once a store was used")
	if err := fs.Parse(args); err != nil {
		return err
	}
	store, vis, err := s.sqlConfigs()
	if err != nil {
		return err
	}
	host, portText, err := net.SplitHostPort(s.listen)
	if err != nil {
		return fmt.Errorf("--listen %q: %w", s.listen, err)
	}
	port, err := strconv.Atoi(portText)
	if err != nil {
		return fmt.Errorf("--listen %q: %w", s.listen, err)
	}
	if s.httpPort == 0 {
		if s.httpPort, err = freePort(host); err != nil {
			return err
		}
	}
	ports := map[primitives.ServiceName]int{primitives.FrontendService: port}
	for _, svc := range []primitives.ServiceName{primitives.HistoryService, primitives.MatchingService, primitives.WorkerService} {
		if ports[svc], err = freePort(host); err != nil {
			return err
		}
	}
	cfg := s.serverConfig(store, vis, host, ports)
	logger := s.logger()
	authorizer, err := authorization.GetAuthorizerFromConfig(&cfg.Global.Authorization)
	if err != nil {
		return err
	}
	claimMapper, err := authorization.GetClaimMapperFromConfig(&cfg.Global.Authorization, logger)
	if err != nil {
		return err
	}
	hosts := map[primitives.ServiceName]static.Hosts{}
	for svc, p := range ports {
		hosts[svc] = static.SingleLocalHost(net.JoinHostPort(host, strconv.Itoa(p)))
	}
	dyn := dynamicconfig.StaticClient{
		// Search attributes the worker adds are usable at once, on every
		// service, rather than after the cache's refresh.
		dynamicconfig.ForceSearchAttributesCacheRefreshOnRead.Key(): true,
		dynamicconfig.FrontendPersistenceMaxQPS.Key():               10000,
		dynamicconfig.HistoryPersistenceMaxQPS.Key():                45000,
	}
	srv, err := temporal.NewServer(
		temporal.WithConfig(cfg),
		temporal.ForServices(temporal.DefaultServices),
		temporal.WithStaticHosts(hosts),
		temporal.WithLogger(logger),
		temporal.WithAuthorizer(authorizer),
		temporal.WithClaimMapper(func(*config.Config) authorization.ClaimMapper { return claimMapper }),
		temporal.WithDynamicConfigClient(dyn),
	)
	if err != nil {
		return fmt.Errorf("build server (a new store, or one from an older server, needs `temporal-server setup-schema` first): %w", err)
	}
	if err := srv.Start(); err != nil {
		return fmt.Errorf("start server (did setup-schema run?): %w", err)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := registerNamespaces(ctx, s.listen, strings.Split(s.namespaces, ","), s.retention); err != nil {
		srv.Stop()
		return err
	}
	fmt.Printf("temporal-server %s serving at %s (store %s, visibility %s on %s)\n",
		serverVersion, s.listen, store.DatabaseName, vis.DatabaseName, store.ConnectAddr)
	<-ctx.Done()
	fmt.Println("temporal-server: stopping")
	srv.Stop()
	return nil
}

func (s *startFlags) serverConfig(store, vis *config.SQL, host string, ports map[primitives.ServiceName]int) *config.Config {
	var cfg config.Config
	cfg.Global.Membership.MaxJoinDuration = 30 * time.Second
	cfg.Global.Membership.BroadcastAddress = host
	if s.metricsListen != "" {
		cfg.Global.Metrics = &metrics.Config{Prometheus: &metrics.PrometheusConfig{
			ListenAddress: s.metricsListen, HandlerPath: "/metrics", Framework: metrics.FrameworkOpentelemetry,
		}}
	}
	cfg.Persistence.DefaultStore = "postgres-default"
	cfg.Persistence.VisibilityStore = "postgres-visibility"
	cfg.Persistence.NumHistoryShards = int32(s.shards)
	cfg.Persistence.DataStores = map[string]config.DataStore{
		"postgres-default":    {SQL: store},
		"postgres-visibility": {SQL: vis},
	}
	frontend := net.JoinHostPort(host, strconv.Itoa(ports[primitives.FrontendService]))
	cfg.ClusterMetadata = &cluster.Config{
		EnableGlobalNamespace:    false,
		FailoverVersionIncrement: 10,
		MasterClusterName:        "active",
		CurrentClusterName:       "active",
		ClusterInformation: map[string]cluster.ClusterInformation{"active": {
			Enabled: true, InitialFailoverVersion: 1, RPCAddress: frontend,
			HTTPAddress: net.JoinHostPort(host, strconv.Itoa(s.httpPort)),
		}},
	}
	cfg.DCRedirectionPolicy.Policy = "noop"
	cfg.Services = map[string]config.Service{}
	for svc, p := range ports {
		var rpc config.RPC
		rpc.GRPCPort, rpc.BindOnIP = p, host
		if svc == primitives.FrontendService {
			rpc.HTTPPort = s.httpPort
		}
		cfg.Services[string(svc)] = config.Service{RPC: rpc}
	}
	cfg.Archival.History.State = "disabled"
	cfg.Archival.Visibility.State = "disabled"
	cfg.NamespaceDefaults.Archival.History.State = "disabled"
	cfg.NamespaceDefaults.Archival.Visibility.State = "disabled"
	cfg.PublicClient.HostPort = frontend
	return &cfg
}

// registerNamespaces registers the namespaces that do not exist yet, then
// waits until the frontend serves them (its namespace cache refreshes every
// few seconds), so that "serving" printed after it means usable.
func registerNamespaces(ctx context.Context, address string, names []string, retention time.Duration) error {
	conn, err := grpc.NewClient(address, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return err
	}
	defer conn.Close()
	wf := workflowservice.NewWorkflowServiceClient(conn)
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	for _, name := range names {
		name = strings.TrimSpace(name)
		if name == "" {
			continue
		}
		for {
			_, err := wf.RegisterNamespace(ctx, &workflowservice.RegisterNamespaceRequest{
				Namespace: name, WorkflowExecutionRetentionPeriod: durationpb.New(retention),
			})
			var exists *serviceerror.NamespaceAlreadyExists
			if err == nil || errors.As(err, &exists) {
				break
			}
			if ctx.Err() != nil {
				return fmt.Errorf("register namespace %s: %w", name, err)
			}
			time.Sleep(200 * time.Millisecond) // the frontend is still starting
		}
		for {
			_, err := wf.ListOpenWorkflowExecutions(ctx, &workflowservice.ListOpenWorkflowExecutionsRequest{Namespace: name, MaximumPageSize: 1})
			if err == nil {
				break
			}
			if ctx.Err() != nil {
				return fmt.Errorf("namespace %s not served: %w", name, err)
			}
			time.Sleep(200 * time.Millisecond)
		}
	}
	return nil
}

func freePort(host string) (int, error) {
	l, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
	if err != nil {
		return 0, fmt.Errorf("find a free port on %s: %w", host, err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func envOr(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}
