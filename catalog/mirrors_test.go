package catalog_test

import (
	"strings"
	"testing"

	"github.com/quantix/cloudimages/catalog"
)

func TestEntryMirrorsAreValidated(t *testing.T) {
	base := catalog.Entry{ID: "x", URL: "https://a.example/x.qcow2", Checksum: "sha256:" + strings.Repeat("0", 64)}
	ok := base
	ok.Mirrors = []string{"https://b.example/x.qcow2", "http://c.example/pub/x.qcow2"}
	cat, err := catalog.New([]catalog.Entry{ok})
	if err != nil {
		t.Fatalf("valid mirrors refused: %v", err)
	}
	if e, _ := cat.Get("x"); len(e.Mirrors) != 2 {
		t.Fatalf("mirrors lost: %+v", e.Mirrors)
	}
	for _, tc := range []struct {
		mirrors []string
		want    string
	}{
		{[]string{""}, "mirrors[0] is empty"},
		{[]string{"ftp://b.example/x.qcow2"}, "http or https"},
		{[]string{"https://u:p@b.example/x.qcow2"}, "source credential"},
		{[]string{"https:///x.qcow2"}, "no host"},
		{[]string{"https://a.example/x.qcow2"}, "listed twice"},
		{[]string{"https://b.example/x.qcow2", "https://b.example/x.qcow2"}, "mirrors[1]"},
		{[]string{"https://b.example/%zz"}, "not a URL"},
	} {
		e := base
		e.Mirrors = tc.mirrors
		if _, err := catalog.New([]catalog.Entry{e}); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("mirrors %q: %v; want an error saying %q", tc.mirrors, err, tc.want)
		}
		if e.Mirrors[0] != "" && strings.Contains(tc.mirrors[0], "u:p@") {
			if _, err := catalog.New([]catalog.Entry{e}); err != nil && strings.Contains(err.Error(), "u:p@") {
				t.Errorf("the error shows the password: %v", err)
			}
		}
	}
}
