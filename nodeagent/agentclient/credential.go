package agentclient

import (
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/textproto"
	"net/url"
	"slices"
	"strings"
)

// Credential is a secret a mirror wants (source credentials: the worker's
// --credentials file), sent with a download request to an agent that names
// FeatureSourceCredentials. It is sent only to Host: never to another
// mirror of the list, never after a redirect to another host. The agent
// keeps the secret (Headers, Username, Password) in memory only; its job
// records hold Redacted, the name and host.
type Credential struct {
	Name string `json:"name"`
	// Host is the mirror's host name, or host:port to match that port only.
	Host string `json:"host"`
	// Headers are sent as they are (e.g. "Authorization: Bearer …",
	// "X-Api-Key: …"); or Username and Password as basic auth.
	Headers  map[string]string `json:"headers,omitempty"`
	Username string            `json:"username,omitempty"`
	Password string            `json:"password,omitempty"`
}

// String never shows the secret, so a credential printed by mistake (%v,
// a log attribute) leaks nothing.
func (c Credential) String() string { return fmt.Sprintf("credential %q for %s", c.Name, c.Host) }

// GoString is String, for %#v.
func (c Credential) GoString() string { return c.String() }

// LogValue is String, for log/slog (whose JSON handler would otherwise
// write every field).
func (c Credential) LogValue() slog.Value { return slog.StringValue(c.String()) }

// Redacted is the credential without its secret: what may be written down.
func (c *Credential) Redacted() *Credential {
	if c == nil {
		return nil
	}
	return &Credential{Name: c.Name, Host: c.Host}
}

// HasSecret reports whether the credential carries a secret to send.
func (c *Credential) HasSecret() bool {
	return c != nil && (len(c.Headers) > 0 || c.Username != "" || c.Password != "")
}

// reservedHeaders are the headers a credential may not set: the download
// itself needs them as they are.
var reservedHeaders = []string{"Host", "Range", "If-Range", "Accept-Encoding", "Content-Length", "Transfer-Encoding", "Connection", "User-Agent"}

// Check judges a credential: a host, a secret of one kind, header names
// and values that can be sent. Its messages never quote a secret.
func (c *Credential) Check() error {
	switch {
	case c.Name == "":
		return fmt.Errorf("credential: a name is required")
	case c.Host == "" || strings.ContainsAny(c.Host, "/@?#") || strings.TrimSpace(c.Host) != c.Host:
		return fmt.Errorf("credential %q: host %q: give the mirror's host name (or host:port), without scheme or path", c.Name, c.Host)
	case len(c.Headers) > 0 && (c.Username != "" || c.Password != ""):
		return fmt.Errorf("credential %q: give either headers or username and password, not both", c.Name)
	case !c.HasSecret():
		return fmt.Errorf("credential %q: give headers, or username and password", c.Name)
	}
	for name, value := range c.Headers {
		canon := textproto.CanonicalMIMEHeaderKey(name)
		if !validHeaderName(name) || slices.Contains(reservedHeaders, canon) {
			return fmt.Errorf("credential %q: header %q cannot be set by a credential", c.Name, name)
		}
		if strings.ContainsAny(value, "\r\n\x00") {
			return fmt.Errorf("credential %q: the value of header %q holds a line break", c.Name, name)
		}
	}
	return nil
}

func validHeaderName(s string) bool {
	if s == "" {
		return false
	}
	for _, r := range s {
		if r > 0x7e || r <= ' ' || strings.ContainsRune(`"(),/:;<=>?@[\]{}`, r) {
			return false
		}
	}
	return true
}

// For reports whether the credential belongs to a URL's host: the same
// host name (any port), or the same host:port when Host names a port.
func (c *Credential) For(u *url.URL) bool {
	if c == nil || u == nil {
		return false
	}
	if _, _, err := net.SplitHostPort(c.Host); err == nil {
		return strings.EqualFold(c.Host, u.Host)
	}
	return strings.EqualFold(strings.Trim(c.Host, "[]"), u.Hostname())
}

// Apply sets the credential's headers on a request to its host, and
// removes them from a request to any other host (a redirect copies the
// first request's headers).
func (c *Credential) Apply(req *http.Request) {
	if c == nil {
		return
	}
	ours := c.For(req.URL)
	if c.Username != "" || c.Password != "" {
		if ours {
			req.SetBasicAuth(c.Username, c.Password)
		} else {
			req.Header.Del("Authorization")
		}
	}
	for name, value := range c.Headers {
		if ours {
			req.Header.Set(name, value)
		} else {
			req.Header.Del(name)
		}
	}
}
