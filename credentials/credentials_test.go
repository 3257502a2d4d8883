package credentials_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/quantix/cloudimages/credentials"
)

const secret = "pa55-not-in-errors"

func write(t *testing.T, name, body string, mode os.FileMode) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(path, []byte(body), mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, mode); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestLoadReadsYAMLAndJSON(t *testing.T) {
	for _, tc := range []struct{ name, body string }{
		{"c.yaml", "vendor:\n  host: images.example.com\n  username: u\n  password: " + secret + "\ntoken:\n  host: cdn.example.com:8443\n  headers:\n    X-Api-Key: " + secret + "\n"},
		{"c.json", `{"vendor": {"host": "images.example.com", "username": "u", "password": "` + secret + `"},
		  "token": {"host": "cdn.example.com:8443", "headers": {"X-Api-Key": "` + secret + `"}}}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			set, err := credentials.Load(write(t, tc.name, tc.body, 0o600))
			if err != nil {
				t.Fatal(err)
			}
			if got := strings.Join(set.Names(), ","); got != "token,vendor" {
				t.Fatalf("names %q", got)
			}
			v, _ := set.Get("vendor")
			tok, _ := set.Get("token")
			if v.Host != "images.example.com" || v.Username != "u" || v.Password != secret || tok.Headers["X-Api-Key"] != secret || tok.Host != "cdn.example.com:8443" {
				t.Fatalf("loaded %#v and %#v wrongly", v, tok)
			}
			if _, ok := set.Get("other"); ok {
				t.Fatal("an unknown name was found")
			}
		})
	}
}

func TestLoadRefusesBadFiles(t *testing.T) {
	for _, tc := range []struct {
		name, body string
		mode       os.FileMode
		want       string
	}{
		{"readable by others", "a:\n  host: h\n  password: " + secret + "\n", 0o644, "chmod 600"},
		{"readable by the group", "a:\n  host: h\n  password: " + secret + "\n", 0o640, "chmod 600"},
		{"no host", "a:\n  password: " + secret + "\n", 0o600, "host"},
		{"no secret", "a:\n  host: h\n", 0o600, "give headers, or username and password"},
		{"both kinds", "a:\n  host: h\n  password: " + secret + "\n  headers: {X-K: " + secret + "}\n", 0o600, "not both"},
		{"a reserved header", "a:\n  host: h\n  headers: {Range: " + secret + "}\n", 0o600, "cannot be set"},
		{"a bad name", "\"no/slash\":\n  host: h\n  password: " + secret + "\n", 0o600, "name"},
		{"not a mapping", "- " + secret + "\n", 0o600, "not YAML or JSON mapping"},
		{"broken syntax", "a: {host: h, password: \"" + secret + "\n", 0o600, "syntax error"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := credentials.Load(write(t, "c.yaml", tc.body, tc.mode))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v; want one saying %q", err, tc.want)
			}
			if strings.Contains(err.Error(), secret) {
				t.Errorf("the error shows the secret: %v", err)
			}
		})
	}
	if _, err := credentials.Load(filepath.Join(t.TempDir(), "missing.yaml")); err == nil {
		t.Error("a missing file loaded")
	}
	if set, err := credentials.Load(""); err != nil || len(set.Names()) != 0 {
		t.Errorf("no file: %v, %v; want an empty set", set.Names(), err)
	}
}

func TestCredentialNeverPrintsItsSecret(t *testing.T) {
	set, err := credentials.Load(write(t, "c.yaml", "a:\n  host: h\n  username: u\n  password: "+secret+"\n", 0o600))
	if err != nil {
		t.Fatal(err)
	}
	c, _ := set.Get("a")
	for _, s := range []string{c.String(), c.GoString(), c.LogValue().String()} {
		if strings.Contains(s, secret) {
			t.Errorf("%q shows the secret", s)
		}
	}
}
