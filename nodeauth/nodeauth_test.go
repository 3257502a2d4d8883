package nodeauth

import (
	"encoding/base64"
	"errors"
	"strconv"
	"strings"
	"testing"
	"time"
)

const secret = "cluster-secret-0123456789abcdef"

func verifier(t *testing.T, nodeID string, now time.Time) *Verifier {
	t.Helper()
	v, err := NewVerifier(Credential(secret, nodeID))
	if err != nil {
		t.Fatal(err)
	}
	v.now = func() time.Time { return now }
	return v
}

func TestCredentialIsPerNode(t *testing.T) {
	a, b := Credential(secret, "node-1"), Credential(secret, "node-2")
	if a == b || a == Credential("other-secret-0123456789", "node-1") {
		t.Fatalf("credentials of different nodes or secrets are equal: %q", a)
	}
	if a != Credential(secret, "node-1") {
		t.Fatal("a node's credential is not stable")
	}
	if strings.Contains(a, secret) || !LooksLikeCredential(a) || LooksLikeCredential(secret) {
		t.Fatalf("credential %q: wrong form", a)
	}
	if err := verifier(t, "node-1", time.Now()).Check(b, "GET", "/v1/health"); !errors.Is(err, ErrWrong) {
		t.Fatalf("node-2's credential at node-1: %v, want ErrWrong", err)
	}
	if err := verifier(t, "node-1", time.Now()).Check(a, "GET", "/v1/health"); err != nil {
		t.Fatalf("node-1's own credential: %v", err)
	}
}

func TestScopedToken(t *testing.T) {
	const path = "/v1/pools/p/files/f"
	exp := time.Now().Add(10 * time.Minute).Truncate(time.Second)
	now := exp.Add(-5 * time.Minute)
	good := Mint(Credential(secret, "node-1"), "GET", path, exp)
	tamper := func(tok string) string {
		b := []byte(tok)
		if b[len(b)-2] == 'A' {
			b[len(b)-2] = 'B'
		} else {
			b[len(b)-2] = 'A'
		}
		return string(b)
	}
	laterExp := strings.Replace(good, strings.Split(good, ".")[1], "9999999999", 1)
	tests := []struct {
		name   string
		token  string
		method string
		path   string
		at     time.Time
		want   error
	}{
		{"valid", good, "GET", path, now, nil},
		{"tampered mac", tamper(good), "GET", path, now, ErrWrongScope},
		{"tampered expiry", laterExp, "GET", path, now, ErrWrongScope},
		{"expired", good, "GET", path, exp.Add(time.Second), ErrExpired},
		{"other path", good, "GET", "/v1/pools/p/files/g", now, ErrWrongScope},
		{"path prefix", good, "GET", path + "/x", now, ErrWrongScope},
		{"other method", good, "DELETE", path, now, ErrWrongScope},
		{"minted by another node", Mint(Credential(secret, "node-2"), "GET", path, exp), "GET", path, now, ErrWrongScope},
		{"minted from the secret", Mint(secret, "GET", path, exp), "GET", path, now, ErrWrongScope},
		{"malformed", "cis1.notanumber.AAAA", "GET", path, now, ErrMalformed},
		{"missing", "", "GET", path, now, ErrMissing},
		{"other node's credential", Credential(secret, "node-2"), "GET", path, now, ErrWrong},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := verifier(t, "node-1", tc.at).Check(tc.token, tc.method, tc.path)
			if !errors.Is(err, tc.want) {
				t.Fatalf("Check = %v, want %v", err, tc.want)
			}
		})
	}
}

func TestMintCapsLifetime(t *testing.T) {
	cred := Credential(secret, "node-1")
	tok := Mint(cred, "GET", "/x", time.Now().Add(30*24*time.Hour))
	v := verifier(t, "node-1", time.Now())
	if err := v.Check(tok, "GET", "/x"); err != nil {
		t.Fatalf("capped token: %v", err)
	}
	v.now = func() time.Time { return time.Now().Add(MaxLifetime + time.Second) }
	if err := v.Check(tok, "GET", "/x"); !errors.Is(err, ErrExpired) {
		t.Fatalf("token past MaxLifetime: %v, want ErrExpired", err)
	}
	// A token made by hand with a far expiry (not through Mint) is refused.
	far := time.Now().Add(24 * time.Hour).Unix()
	long := scopedPrefix + itoa(far) + "." + b64(scopedMAC(cred, "GET", "/x", far))
	if err := verifier(t, "node-1", time.Now()).Check(long, "GET", "/x"); !errors.Is(err, ErrTooLong) {
		t.Fatalf("day-long token: %v, want ErrTooLong", err)
	}
}

func TestBearer(t *testing.T) {
	for in, want := range map[string]string{"Bearer abc": "abc", "bearer abc": "abc", "Basic abc": "", "abc": "", "": ""} {
		if got := Bearer(in); got != want {
			t.Errorf("Bearer(%q) = %q, want %q", in, got, want)
		}
	}
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }

func b64(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }

func TestMintFileReadIsScopedToOneFile(t *testing.T) {
	now := time.Now()
	cred := Credential(secret, "node-1")
	tok := MintFileRead(cred, "local-1", "cirros+1.qcow2", now.Add(5*time.Minute))
	v := verifier(t, "node-1", now)
	if got := FileReadPath("local-1", "cirros+1.qcow2"); got != "/v1/pools/local-1/files/cirros+1.qcow2" {
		t.Fatalf("FileReadPath = %q", got)
	}
	if got := FileReadPath("p", "a b/c"); got != "/v1/pools/p/files/a%20b%2Fc" {
		t.Fatalf("FileReadPath escapes nothing: %q", got)
	}
	if err := v.Check(tok, "GET", FileReadPath("local-1", "cirros+1.qcow2")); err != nil {
		t.Fatalf("the file's own read: %v", err)
	}
	for _, c := range []struct{ method, path string }{
		{"GET", FileReadPath("local-1", "other.qcow2")},
		{"GET", FileReadPath("local-2", "cirros+1.qcow2")},
		{"DELETE", FileReadPath("local-1", "cirros+1.qcow2")},
	} {
		if err := v.Check(tok, c.method, c.path); !errors.Is(err, ErrWrongScope) {
			t.Errorf("%s %s: %v, want ErrWrongScope", c.method, c.path, err)
		}
	}
	if err := verifier(t, "node-2", now).Check(tok, "GET", FileReadPath("local-1", "cirros+1.qcow2")); !errors.Is(err, ErrWrongScope) {
		t.Errorf("at another node: %v, want ErrWrongScope", err)
	}
}
