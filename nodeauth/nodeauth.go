// Package nodeauth is how the control plane and the node agents prove who
// may call an agent. There is one cluster secret, held by the worker (and
// the API); each agent holds only its own credential, derived from that
// secret and its node id, so what is sent to one node's address opens that
// node only. Where a caller other than the worker must reach an agent (one
// agent reading a file from another, the API streaming an upload), the
// worker mints a short-lived token from the target's credential, scoped to
// one method, one path and an expiry, which the target checks.
package nodeauth

import (
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"net/url"
	"strconv"
	"strings"
	"time"
)

const (
	credentialPrefix = "cin1."
	scopedPrefix     = "cis1."
	// Domain separation: a credential is never a valid MAC of a scoped
	// token, nor the other way round.
	credentialDomain = "cloudimages node credential v1\x00"
	scopedDomain     = "cloudimages scoped token v1\x00"
)

// MaxLifetime is the longest a scoped token lives: Mint shortens a later
// expiry to it, and a verifier refuses a token that claims more (beyond a
// minute of clock skew).
const MaxLifetime = time.Hour

// skew is how far the minter's clock may run ahead of the verifier's.
const skew = time.Minute

// Credential returns the credential of a node: what the node's agent is
// given as its --node-token and what the worker sends it. It is an
// HMAC-SHA256 of the node id under the cluster secret, so it tells nothing
// about the secret or about any other node's credential.
func Credential(clusterSecret, nodeID string) string {
	m := hmac.New(sha256.New, []byte(clusterSecret))
	m.Write([]byte(credentialDomain + nodeID))
	return credentialPrefix + base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

// LooksLikeCredential reports whether s has the form of a credential that
// Credential returns: an agent given the cluster secret itself (the old
// shared token) can warn that the worker will not send it that.
func LooksLikeCredential(s string) bool {
	b, err := base64.RawURLEncoding.DecodeString(strings.TrimPrefix(s, credentialPrefix))
	return strings.HasPrefix(s, credentialPrefix) && err == nil && len(b) == sha256.Size
}

// Mint returns a token that lets its bearer make one kind of request to the
// node whose credential is given: method on path (the path as sent, escaped,
// without the query), until expiry. An expiry more than MaxLifetime away is
// shortened to MaxLifetime.
func Mint(credential, method, path string, expiry time.Time) string {
	if limit := time.Now().Add(MaxLifetime); expiry.After(limit) {
		expiry = limit
	}
	exp := expiry.Unix()
	return scopedPrefix + strconv.FormatInt(exp, 10) + "." + base64.RawURLEncoding.EncodeToString(scopedMAC(credential, method, path, exp))
}

// FileReadPath is the path of the agent route that serves one published
// file to peers, GET /v1/pools/{pool_id}/files/{file_name}, escaped as it
// is sent: the path a file-read token is scoped to.
func FileReadPath(poolID, fileName string) string {
	return "/v1/pools/" + url.PathEscape(poolID) + "/files/" + url.PathEscape(fileName)
}

// MintFileRead returns a token that lets its bearer read one published
// file from the node whose credential is given (its pool poolID, its file
// fileName), until expiry: what the worker hands a target agent so it can
// copy the file from the source agent. The token is scoped to GET; the
// source also accepts it for HEAD of the same path.
func MintFileRead(credential, poolID, fileName string, expiry time.Time) string {
	return Mint(credential, "GET", FileReadPath(poolID, fileName), expiry)
}

func scopedMAC(credential, method, path string, exp int64) []byte {
	m := hmac.New(sha256.New, []byte(credential))
	m.Write([]byte(scopedDomain + strings.ToUpper(method) + "\n" + path + "\n" + strconv.FormatInt(exp, 10)))
	return m.Sum(nil)
}

// Why a bearer was refused. The reasons are safe to tell the caller.
var (
	ErrMissing      = errors.New("no bearer token")
	ErrWrong        = errors.New("wrong bearer token")
	ErrExpired      = errors.New("scoped token expired")
	ErrTooLong      = errors.New("scoped token lives longer than the allowed hour")
	ErrWrongScope   = errors.New("scoped token is not for this node, method and path")
	ErrMalformed    = errors.New("malformed scoped token")
	errNoCredential = errors.New("nodeauth: a verifier needs the node's credential")
)

// Verifier checks the bearers an agent receives against its own credential.
type Verifier struct {
	credential [sha256.Size]byte // hashed, so comparing takes the same time whatever was sent
	raw        string
	now        func() time.Time
}

// NewVerifier returns the verifier of the node holding credential.
func NewVerifier(credential string) (*Verifier, error) {
	if credential == "" {
		return nil, errNoCredential
	}
	return &Verifier{credential: sha256.Sum256([]byte(credential)), raw: credential, now: time.Now}, nil
}

// Check allows a request when its bearer token (the Authorization header's
// value without "Bearer ") is the node's credential, or a scoped token
// minted from it for this method and exact path that has not expired.
func (v *Verifier) Check(bearer, method, path string) error {
	if bearer == "" {
		return ErrMissing
	}
	got := sha256.Sum256([]byte(bearer))
	if subtle.ConstantTimeCompare(got[:], v.credential[:]) == 1 {
		return nil
	}
	rest, ok := strings.CutPrefix(bearer, scopedPrefix)
	if !ok {
		return ErrWrong
	}
	expText, macText, ok := strings.Cut(rest, ".")
	exp, err := strconv.ParseInt(expText, 10, 64)
	mac, err2 := base64.RawURLEncoding.DecodeString(macText)
	if !ok || err != nil || err2 != nil || len(mac) != sha256.Size {
		return ErrMalformed
	}
	if !hmac.Equal(mac, scopedMAC(v.raw, method, path, exp)) {
		return ErrWrongScope
	}
	now := v.now()
	switch {
	case now.Unix() >= exp:
		return ErrExpired
	case time.Unix(exp, 0).After(now.Add(MaxLifetime + skew)):
		return ErrTooLong
	}
	return nil
}

// Bearer returns the token of an Authorization header, "" when it carries
// none.
func Bearer(authorization string) string {
	scheme, token, ok := strings.Cut(authorization, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return ""
	}
	return strings.TrimSpace(token)
}
