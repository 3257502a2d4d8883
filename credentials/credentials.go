// Package credentials holds the source credentials a worker may send to
// node agents with a download: per name, a mirror host and either headers
// or basic auth, read from the file given to --credentials. Only the name
// travels through the API, the database and the workflow history; the
// activity that starts the node-side job looks the secret up here.
package credentials

import (
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/quantix/cloudimages/catalog"
	"github.com/quantix/cloudimages/nodeagent/agentclient"
)

// Set is the credentials of a worker, by name.
type Set struct {
	byName map[string]agentclient.Credential
}

// entry is one credential as the file spells it.
type entry struct {
	Host     string            `yaml:"host"`
	Headers  map[string]string `yaml:"headers"`
	Username string            `yaml:"username"`
	Password string            `yaml:"password"`
}

// Load reads a credentials file: YAML or JSON, a map from name to
// {host, headers | username + password}. The file must be readable by its
// owner only (mode 0600 or stricter): it holds secrets. An empty path is
// an empty set.
func Load(path string) (*Set, error) {
	set := &Set{byName: map[string]agentclient.Credential{}}
	if path == "" {
		return set, nil
	}
	fi, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("credentials: %w", err)
	}
	if perm := fi.Mode().Perm(); perm&0o077 != 0 {
		return nil, fmt.Errorf("credentials: %s has mode %04o: it holds secrets, so let only its owner read it (chmod 600 %s)", path, perm, path)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("credentials: %w", err)
	}
	var entries map[string]entry
	if err := yaml.Unmarshal(data, &entries); err != nil {
		// The parser's message may quote the file's text: keep it out.
		return nil, fmt.Errorf("credentials: %s is not YAML or JSON mapping names to {host, headers | username, password}: %s", path, yamlLine(err))
	}
	for name, e := range entries {
		if err := catalog.ValidName(name); err != nil {
			return nil, fmt.Errorf("credentials: %s: name %q: %v", path, name, err)
		}
		c := agentclient.Credential{Name: name, Host: e.Host, Headers: e.Headers, Username: e.Username, Password: e.Password}
		if err := c.Check(); err != nil {
			return nil, fmt.Errorf("credentials: %s: %v", path, err)
		}
		set.byName[name] = c
	}
	return set, nil
}

// yamlLine keeps the line numbers of a YAML error, not the text it quotes.
func yamlLine(err error) string {
	var te *yaml.TypeError
	if errors.As(err, &te) {
		return fmt.Sprintf("%d entries of the wrong type", len(te.Errors))
	}
	msg := err.Error()
	if i := strings.Index(msg, "line "); i >= 0 {
		end := i + len("line ")
		for end < len(msg) && msg[end] >= '0' && msg[end] <= '9' {
			end++
		}
		return "a syntax error at " + msg[i:end]
	}
	return "a syntax error"
}

// Get returns the credential of a name.
func (s *Set) Get(name string) (agentclient.Credential, bool) {
	if s == nil {
		return agentclient.Credential{}, false
	}
	c, ok := s.byName[name]
	return c, ok
}

// Names returns the names of the credentials, sorted.
func (s *Set) Names() []string {
	if s == nil {
		return nil
	}
	names := make([]string, 0, len(s.byName))
	for n := range s.byName {
		names = append(names, n)
	}
	slices.Sort(names)
	return names
}
