package nodeagent

import (
	"errors"
	"fmt"
	"net/netip"
	"syscall"

	"github.com/quantix/cloudimages/source"
)

// maxRedirects bounds the redirects of one request: mirrors redirect once
// or twice (to a CDN); a longer chain is a loop or a trap.
const maxRedirects = 5

// forbiddenError is an address the URL policy refuses; it surfaces from
// deep inside the HTTP client, so it has its own type to be found again.
type forbiddenError struct{ msg string }

func (e *forbiddenError) Error() string { return e.msg }

// dialControl is the URL policy's address rule (source.ForbiddenAddr)
// applied to the address actually dialled — after DNS, for every
// connection, redirects included — so a name that resolves (or later
// re-resolves) to an internal address does not get through.
func dialControl(network, address string, _ syscall.RawConn) error {
	ap, err := netip.ParseAddrPort(address)
	if err != nil {
		return &forbiddenError{fmt.Sprintf("cannot check address %q: %v", address, err)}
	}
	if why := source.ForbiddenAddr(ap.Addr()); why != "" {
		return &forbiddenError{fmt.Sprintf("%s is %s; %s", ap.Addr(), why, source.PublicOnly)}
	}
	return nil
}

// asForbidden finds a policy refusal inside an error from the HTTP client.
func asForbidden(err error) (*forbiddenError, bool) {
	var fe *forbiddenError
	ok := errors.As(err, &fe)
	return fe, ok
}
