package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/quantix/cloudimages/api"
	"github.com/quantix/cloudimages/fault"
)

// The client commands' connection settings, with their variables. The
// token variable is the one the API server reads too, so one setting
// serves both on a laptop.
const (
	envAPIURL       = "CLOUDIMAGES_API_URL"
	envAPIToken     = "CLOUDIMAGES_API_TOKEN"
	envAPITokenFile = "CLOUDIMAGES_API_TOKEN_FILE"
	envOutput       = "CLOUDIMAGES_OUTPUT"
	defaultAPIURL   = "http://127.0.0.1:8080"
)

// errInterrupted ends a client command stopped by Ctrl-C (exit 130); the
// command has said what it left running.
var errInterrupted = errors.New("interrupted")

// silentExit ends a command with this exit code; the command has printed
// why (a download that FAILED, say).
type silentExit int

func (e silentExit) Error() string { return fmt.Sprintf("exit %d", int(e)) }

// clientConfig is the connection to the API, shared by every client command.
type clientConfig struct {
	apiURL    string
	token     string
	tokenFile string
}

// register adds the connection flags to a client command group; a flag
// wins over its variable.
func (c *clientConfig) register(fs *pflag.FlagSet) {
	fs.StringVar(&c.apiURL, "api-url", envOr(envAPIURL, defaultAPIURL), "the API's base URL (env "+envAPIURL+")")
	fs.StringVar(&c.token, "api-token", "", "bearer token of the API (env "+envAPIToken+"; prefer --api-token-file)")
	fs.StringVar(&c.tokenFile, "api-token-file", "", "file that holds the API token (env "+envAPITokenFile+")")
}

func envOr(env, def string) string {
	if v, ok := os.LookupEnv(env); ok && v != "" {
		return v
	}
	return def
}

// client checks the settings and returns a client of the API.
func (c *clientConfig) client(cmd *cobra.Command) (*conn, error) {
	u, err := url.Parse(c.apiURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, usagef("--api-url %q: want the API's base URL, e.g. %s", c.apiURL, defaultAPIURL)
	}
	token, err := c.resolveToken(cmd.Flags())
	if err != nil {
		return nil, err
	}
	base := strings.TrimSuffix(c.apiURL, "/")
	return &conn{api.Client{BaseURL: base, Token: token}}, nil
}

// resolveToken picks the token: --api-token or --api-token-file given on
// the command line, else the variables. Both flags at once is a mistake.
func (c *clientConfig) resolveToken(fs *pflag.FlagSet) (string, error) {
	token, file := c.token, c.tokenFile
	switch flagToken, flagFile := fs.Changed("api-token"), fs.Changed("api-token-file"); {
	case flagToken && flagFile:
		return "", usagef("both --api-token and --api-token-file are given: give one of them")
	case flagToken:
		file = ""
	case flagFile:
		token = ""
	default:
		token, file = os.Getenv(envAPIToken), os.Getenv(envAPITokenFile)
		if token != "" && file != "" {
			return "", usagef("both %s and %s are set: set one of them", envAPIToken, envAPITokenFile)
		}
	}
	if file != "" {
		b, err := os.ReadFile(file)
		if err != nil {
			return "", usagef("--api-token-file: %v", err)
		}
		if token = strings.TrimSpace(string(b)); token == "" {
			return "", usagef("--api-token-file %s is empty: put the API's token in it", file)
		}
	}
	return strings.TrimSpace(token), nil
}

// conn is the API's client as the commands use it: the API's own client
// and wire types, plus paging and the events stream.
type conn struct {
	api.Client
}

// get decodes the answer of a GET into out.
func (c *conn) get(ctx context.Context, path string, out any) error {
	_, err := c.Call(ctx, http.MethodGet, path, nil, out)
	return c.explain(err)
}

// list returns every item of a list route, page after page: a route that
// pages (GET /v1/images) answers a next_page_token until the last page.
func (c *conn) list(ctx context.Context, path string, query url.Values) ([]json.RawMessage, error) {
	var items []json.RawMessage
	q := url.Values{}
	for k, v := range query {
		q[k] = v
	}
	for {
		var page struct {
			Items         []json.RawMessage `json:"items"`
			NextPageToken string            `json:"next_page_token"`
		}
		p := path
		if len(q) > 0 {
			p += "?" + q.Encode()
		}
		if err := c.get(ctx, p, &page); err != nil {
			return nil, err
		}
		items = append(items, page.Items...)
		if page.NextPageToken == "" {
			return items, nil
		}
		q.Set("page_token", page.NextPageToken)
	}
}

// explain turns an error that got no answer into one that says where the
// API was looked for; an API error (code: message) stays as it is.
func (c *conn) explain(err error) error {
	if err == nil {
		return nil
	}
	if _, ok := fault.As(err); ok {
		return err
	}
	var ue *url.Error
	if errors.As(err, &ue) && !errors.Is(err, context.Canceled) {
		return fmt.Errorf("cannot reach the API at %s: %v; is it running? Give its address with --api-url or %s", c.BaseURL, ue.Err, envAPIURL)
	}
	return err
}

// apiErrorText is how an error of the API is printed: its code and message.
func apiErrorText(err error) (string, bool) {
	fe, ok := fault.As(err)
	if !ok {
		return "", false
	}
	return fe.Code + ": " + fe.Message, true
}

// unmarshal decodes items into values of T.
func unmarshal[T any](items []json.RawMessage) ([]T, error) {
	out := make([]T, 0, len(items))
	for _, raw := range items {
		var v T
		if err := json.Unmarshal(raw, &v); err != nil {
			return nil, fmt.Errorf("the API answered an item this client cannot read: %w", err)
		}
		out = append(out, v)
	}
	return out, nil
}
