package api

import (
	"encoding/base64"
	"encoding/json"
	"strconv"
	"time"

	"github.com/quantix/cloudimages/fault"
	"github.com/quantix/cloudimages/store"
)

// Page sizes of GET /v1/images.
const (
	defaultPageLimit = 100
	maxPageLimit     = 1000
)

// imagePage is one page of GET /v1/images: the list envelope and, unless
// it is the last page, the token of the next one.
type imagePage struct {
	Items         []Image `json:"items"`
	NextPageToken string  `json:"next_page_token,omitempty"`
}

func pageLimit(q string) (int, error) {
	if q == "" {
		return defaultPageLimit, nil
	}
	n, err := strconv.Atoi(q)
	if err != nil || n < 1 || n > maxPageLimit {
		return 0, apiErr(fault.InvalidRequest, "limit %q: want a whole number from 1 to %d (default %d)", q, maxPageLimit, defaultPageLimit)
	}
	return n, nil
}

// pageToken is where the next page starts. Clients treat the token as
// opaque: its form may change.
type pageToken struct {
	CreatedAt time.Time `json:"t"`
	ID        string    `json:"id"`
}

func encodePageToken(c store.ImageCursor) string {
	b, _ := json.Marshal(pageToken{CreatedAt: c.CreatedAt.UTC(), ID: c.ID}) // cannot fail: a time and a string
	return base64.RawURLEncoding.EncodeToString(b)
}

func decodePageToken(s string) (store.ImageCursor, error) {
	var t pageToken
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err == nil {
		err = json.Unmarshal(b, &t)
	}
	if err != nil || t.ID == "" || t.CreatedAt.IsZero() {
		return store.ImageCursor{}, apiErr(fault.InvalidRequest,
			"page_token %q is not one this API gave: pass the next_page_token of the previous page as it is, or leave it out to start at the first page", s)
	}
	return store.ImageCursor{CreatedAt: t.CreatedAt, ID: t.ID}, nil
}
