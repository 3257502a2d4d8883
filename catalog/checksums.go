package catalog

import (
	"bufio"
	"bytes"
	"fmt"
	"net/url"
	"path"
	"regexp"
	"strings"

	"github.com/quantix/cloudimages/checksum"
)

// FileSum is one line of a vendor's checksum file: a file name and its
// checksum in the contract form ("sha256:HEX" or "sha512:HEX").
type FileSum struct {
	Name string
	Sum  string
}

// bsdLine is the BSD style of Fedora, Rocky and Alma: "SHA256 (file) = hex".
var bsdLine = regexp.MustCompile(`^(SHA256|SHA512)\s*\((.+)\)\s*=\s*([0-9A-Fa-f]+)$`)

// ParseChecksumFile reads the checksum files vendors publish next to their
// images: GNU style ("HEX  name" or "HEX *name", as in Ubuntu's SHA256SUMS
// and Debian's SHA512SUMS) and BSD style ("SHA256 (name) = HEX", as in
// Fedora's, Rocky's and Alma's CHECKSUM, PGP-signed or not). Lines it does
// not understand — comments, signatures, MD5 or SHA1 sums — are skipped.
func ParseChecksumFile(data []byte) []FileSum {
	var out []FileSum
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 64*1024), 1<<20)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		if fs, ok := parseBSD(line); ok {
			out = append(out, fs)
		} else if fs, ok := parseGNU(line); ok {
			out = append(out, fs)
		}
	}
	return out
}

func parseBSD(line string) (FileSum, bool) {
	m := bsdLine.FindStringSubmatch(line)
	if m == nil {
		return FileSum{}, false
	}
	sum, err := checksum.Parse(strings.ToLower(m[1]) + ":" + m[3])
	if err != nil {
		return FileSum{}, false
	}
	return FileSum{Name: cleanName(m[2]), Sum: sum.String()}, true
}

func parseGNU(line string) (FileSum, bool) {
	digest, name, ok := strings.Cut(line, " ")
	if !ok {
		return FileSum{}, false
	}
	algo := map[int]string{64: "sha256", 128: "sha512"}[len(digest)]
	if algo == "" {
		return FileSum{}, false
	}
	sum, err := checksum.Parse(algo + ":" + digest)
	if err != nil {
		return FileSum{}, false
	}
	name = strings.TrimLeft(name, " ")
	name = strings.TrimPrefix(name, "*") // binary mode marker
	if name == "" {
		return FileSum{}, false
	}
	return FileSum{Name: cleanName(name), Sum: sum.String()}, true
}

func cleanName(name string) string {
	return strings.TrimPrefix(strings.TrimSpace(name), "./")
}

// LookupChecksum finds the checksum of the image at imageURL in a checksum
// file fetched from checksumURL. The image's file name must be listed;
// the one exception is a checksum file made for a single image (its name
// starts with the image's, like Rocky's "X.qcow2.CHECKSUM", which lists the
// dated file that "latest" points to) holding exactly one file. When a
// file is listed with both sha256 and sha512, sha512 wins.
func LookupChecksum(data []byte, imageURL, checksumURL string) (string, error) {
	fs, err := LookupFile(data, imageURL, checksumURL)
	return fs.Sum, err
}

// LookupFile is LookupChecksum that also says under which name the file
// is listed: the dated build a "latest" URL points to, in a checksum file
// made for a single image.
func LookupFile(data []byte, imageURL, checksumURL string) (FileSum, error) {
	want := urlBase(imageURL)
	sums := ParseChecksumFile(data)
	if len(sums) == 0 {
		return FileSum{}, fmt.Errorf("checksum file %s lists no sha256 or sha512 sums", checksumURL)
	}
	var best FileSum
	for _, fs := range sums {
		if fs.Name == want || path.Base(fs.Name) == want {
			if best.Sum == "" || strings.HasPrefix(fs.Sum, "sha512:") {
				best = fs
			}
		}
	}
	if best.Sum != "" {
		return best, nil
	}
	if names := distinctNames(sums); len(names) == 1 && want != "" && strings.HasPrefix(urlBase(checksumURL), want) {
		return sums[len(sums)-1], nil
	}
	return FileSum{}, fmt.Errorf("checksum file %s does not list %q", checksumURL, want)
}

// buildInName finds a vendor's build in a file name: a release, a dash and
// a dotted build number, standing between separators — Fedora's
// "Fedora-Cloud-Base-Generic-41-1.4.x86_64.qcow2" (41-1.4), Rocky's
// "Rocky-9-GenericCloud-Base-9.5-20241118.0.x86_64.qcow2"
// (9.5-20241118.0). The dot in the build keeps "amd64-20241201" and
// "cirros-0.6.3-x86_64" from passing for one.
var buildInName = regexp.MustCompile(`(?:^|[-_])(\d+(?:\.\d+)*-\d+(?:\.\d+)+)(?:[._-]|$)`)

// Version is the build an image is: the one in the file name the
// vendor's checksum file lists it under (listed, else the image's own
// name), or, when neither carries one, the first 12 hex digits of its
// checksum ("sha256:HEX").
func Version(listed, imageURL, checksum string) string {
	for _, name := range []string{path.Base(listed), urlBase(imageURL)} {
		if m := buildInName.FindStringSubmatch(name); m != nil {
			return m[1]
		}
	}
	_, hex, _ := strings.Cut(checksum, ":")
	if len(hex) > 12 {
		hex = hex[:12]
	}
	return hex
}

func distinctNames(sums []FileSum) map[string]bool {
	names := map[string]bool{}
	for _, fs := range sums {
		names[fs.Name] = true
	}
	return names
}

// urlBase is the unescaped last path element of a URL.
func urlBase(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return path.Base(raw)
	}
	return path.Base(u.Path)
}
