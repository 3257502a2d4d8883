package nodeagent

import (
	"fmt"
	"slices"
	"strings"

	"github.com/quantix/cloudimages/fault"
	"github.com/quantix/cloudimages/nodeagent/agentclient"
)

// mirrors is a download's list of URLs for the same file (the request's
// URL, then its Mirrors) and where the download is in it: the mirror now
// used, and how the others failed since the download last made progress.
// One failed round — every mirror failed in a row — is one failed attempt
// to the retry loop; a list of one behaves as a single URL always has.
type mirrors struct {
	urls []string
	cur  int
	errs []*fault.Error // the failure of each mirror in this round, nil while untried
}

func newMirrors(urls []string, start int) *mirrors {
	if start < 0 || start >= len(urls) {
		start = 0
	}
	return &mirrors{urls: urls, cur: start, errs: make([]*fault.Error, len(urls))}
}

// url is the mirror to ask now.
func (m *mirrors) url() string { return m.urls[m.cur] }

// progressed starts a new round: the mirror now used brought data.
func (m *mirrors) progressed() { clear(m.errs) }

// mirrorFault reports whether an error is the mirror's (not there, a server
// error, unreachable, stalled, refused by the URL policy): another mirror
// may serve the file. Disk, size and image errors are the same anywhere.
func mirrorFault(fe *fault.Error) bool {
	return fe.Code == fault.UpstreamNotFound || fe.Code == fault.UpstreamError || fe.Code == fault.URLForbidden
}

// failed records the current mirror's failure and moves on to the next one
// not yet tried in this round. It returns false when every mirror has
// failed: the round is over, and the next starts at the first mirror.
func (m *mirrors) failed(fe *fault.Error) bool {
	m.errs[m.cur] = fe
	for i := 1; i < len(m.urls); i++ {
		if next := (m.cur + i) % len(m.urls); m.errs[next] == nil {
			m.cur = next
			return true
		}
	}
	return false
}

// roundError is the error of a round in which every mirror failed: the
// mirror's own with a single URL; with several, one that names each mirror
// and how it failed, retryable when any failure was (a later round may get
// through), and with their common code (else upstream_error). It then
// starts the next round at the first mirror.
func (m *mirrors) roundError() *fault.Error {
	defer func() { m.cur = 0; clear(m.errs) }()
	if len(m.urls) == 1 {
		return m.errs[0]
	}
	out := &fault.Error{Code: m.errs[0].Code}
	parts := make([]string, 0, len(m.urls))
	for i, fe := range m.errs {
		if fe.Code != out.Code {
			out.Code = fault.UpstreamError
		}
		out.Retryable = out.Retryable || fe.Retryable
		parts = append(parts, fmt.Sprintf("%d. %s: %s", i+1, redact(m.urls[i]), fe.Message))
	}
	out.Message = fmt.Sprintf("all %d mirrors failed: %s", len(m.urls), strings.Join(parts, "; "))
	return out
}

// servedBy pairs the bytes each mirror served with its URL, passwords
// hidden, for Download.Mirrors.
func servedBy(urls []string, served []int64) []agentclient.MirrorBytes {
	out := make([]agentclient.MirrorBytes, len(urls))
	for i, u := range urls {
		out[i] = agentclient.MirrorBytes{URL: redact(u)}
		if i < len(served) {
			out[i].Bytes = served[i]
		}
	}
	return out
}

// fitServed returns counts for n mirrors: a record's, or zeros.
func fitServed(served []int64, n int) []int64 {
	if len(served) == n {
		return slices.Clone(served)
	}
	return make([]int64, n)
}

// url is the mirror the transfer asks now (the request's URL before the
// transfer has its list).
func (t *transfer) url() string {
	switch {
	case t.req.Peer != nil:
		return t.peerURL
	case t.m == nil:
		return t.req.URL
	}
	return t.m.url()
}
