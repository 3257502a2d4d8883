package catalog

import (
	"fmt"
	"net/url"
	"path"
	"regexp"
	"strings"
)

var safeName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._+-]{0,199}$`)

// ValidName checks an image or file name: letters, digits, '.', '_', '+'
// and '-', starting with a letter or digit, at most 200 characters. No
// path characters, so a name can never point outside a pool.
func ValidName(name string) error {
	if !safeName.MatchString(name) || strings.Contains(name, "..") {
		return fmt.Errorf("name %q: use letters, digits, '.', '_', '+' and '-' only (no '/', no '..'), at most 200 characters", name)
	}
	return nil
}

// FileName is the file an image is published as in its pool: the catalog
// entry's id or the given name, with the extension of the URL's file
// (".qcow2", ".img", ".raw") unless the name already ends with it.
func FileName(name, rawURL string) string {
	ext := ""
	if u, err := url.Parse(rawURL); err == nil {
		ext = strings.ToLower(path.Ext(u.Path))
	}
	switch ext {
	case ".qcow2", ".img", ".raw", ".qcow", ".vmdk", ".vhd", ".vhdx":
	default:
		ext = ""
	}
	if ext == "" || strings.HasSuffix(strings.ToLower(name), ext) {
		return name
	}
	return name + ext
}

// Format guesses the disk format from a URL or file name: "qcow2" for
// .qcow2 files, "raw" otherwise. The node agent checks the qcow2 magic only
// where qcow2 is expected. (Many vendors ship qcow2 as .img: a catalog
// entry's own Format says so.)
func Format(name string) string {
	if strings.HasSuffix(strings.ToLower(name), ".qcow2") {
		return "qcow2"
	}
	return "raw"
}
