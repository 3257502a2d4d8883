package catalog

import (
	"strings"
	"testing"
)

const (
	hex256a = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
	hex256b = "BBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBB"
)

var hex512 = strings.Repeat("c", 128)

func TestLookupChecksum(t *testing.T) {
	cases := []struct {
		name, file, imageURL, checksumURL, want string
	}{
		{"ubuntu SHA256SUMS binary marker",
			hex256a + " *ubuntu-24.04-server-cloudimg-arm64.img\n" + hex256b + " *ubuntu-24.04-server-cloudimg-amd64.img\n",
			"https://cloud-images.ubuntu.com/releases/24.04/release/ubuntu-24.04-server-cloudimg-amd64.img",
			"https://cloud-images.ubuntu.com/releases/24.04/release/SHA256SUMS",
			"sha256:" + strings.ToLower(hex256b)},
		{"debian SHA512SUMS text mode",
			hex512 + "  debian-12-genericcloud-amd64.qcow2\n" + strings.Repeat("d", 128) + "  debian-12-genericcloud-amd64.raw\n",
			"https://cloud.debian.org/images/cloud/bookworm/latest/debian-12-genericcloud-amd64.qcow2",
			"https://cloud.debian.org/images/cloud/bookworm/latest/SHA512SUMS",
			"sha512:" + hex512},
		{"fedora signed BSD CHECKSUM",
			"-----BEGIN PGP SIGNED MESSAGE-----\nHash: SHA256\n\n# Fedora-Cloud-Base-Generic-41-1.4.x86_64.qcow2: 123 bytes\n" +
				"SHA256 (Fedora-Cloud-Base-Generic-41-1.4.x86_64.qcow2) = " + hex256a + "\n" +
				"SHA256 (Fedora-Cloud-Base-Generic-41-1.4.x86_64.raw.xz) = " + hex256b + "\n-----BEGIN PGP SIGNATURE-----\nwsFzBAEBCAAdFiEE\n-----END PGP SIGNATURE-----\n",
			"https://dl.fedoraproject.org/x/Fedora-Cloud-Base-Generic-41-1.4.x86_64.qcow2",
			"https://dl.fedoraproject.org/x/Fedora-Cloud-41-1.4-x86_64-CHECKSUM",
			"sha256:" + hex256a},
		{"rocky per-file CHECKSUM naming the dated file",
			"# Rocky-9-GenericCloud-Base-9.5-20241118.0.x86_64.qcow2: 609812480 bytes\nSHA256 (Rocky-9-GenericCloud-Base-9.5-20241118.0.x86_64.qcow2) = " + hex256a + "\n",
			"https://dl.rockylinux.org/pub/rocky/9/images/x86_64/Rocky-9-GenericCloud-Base.latest.x86_64.qcow2",
			"https://dl.rockylinux.org/pub/rocky/9/images/x86_64/Rocky-9-GenericCloud-Base.latest.x86_64.qcow2.CHECKSUM",
			"sha256:" + hex256a},
		{"sha512 wins over sha256 for the same file",
			"SHA256 (a.qcow2) = " + hex256a + "\nSHA512 (a.qcow2) = " + hex512 + "\n",
			"https://x/a.qcow2", "https://x/CHECKSUM", "sha512:" + hex512},
		{"dot-slash names and escaped URLs",
			hex256a + "  ./my image.img\n", "https://x/my%20image.img", "https://x/SHA256SUMS", "sha256:" + hex256a},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, err := LookupChecksum([]byte(c.file), c.imageURL, c.checksumURL)
			if err != nil || got != c.want {
				t.Fatalf("LookupChecksum = %q, %v; want %q", got, err, c.want)
			}
		})
	}
}

func TestLookupChecksumRefuses(t *testing.T) {
	cases := []struct{ name, file, imageURL, checksumURL, wantErr string }{
		{"file not listed", hex256a + "  other.img\n" + hex256b + "  third.img\n", "https://x/mine.img", "https://x/SHA256SUMS", `does not list "mine.img"`},
		{"single entry but a shared checksum file", hex256a + "  other.img\n", "https://x/mine.img", "https://x/SHA256SUMS", `does not list`},
		{"md5 and sha1 only", "d41d8cd98f00b204e9800998ecf8427e  mine.img\nda39a3ee5e6b4b0d3255bfef95601890afd80709  mine.img\n", "https://x/mine.img", "https://x/MD5SUMS", "no sha256 or sha512"},
		{"an HTML page", "<html><body>Not Found</body></html>", "https://x/mine.img", "https://x/SHA256SUMS", "no sha256 or sha512"},
		{"digest not hex", strings.Repeat("z", 64) + "  mine.img\n", "https://x/mine.img", "https://x/SHA256SUMS", "no sha256 or sha512"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, err := LookupChecksum([]byte(c.file), c.imageURL, c.checksumURL)
			if err == nil || !strings.Contains(err.Error(), c.wantErr) {
				t.Fatalf("LookupChecksum = %q, %v; want an error containing %q", got, err, c.wantErr)
			}
		})
	}
}

func FuzzParseChecksumFile(f *testing.F) {
	f.Add([]byte(hex256a + " *a.img\nSHA512 (b) = " + hex512 + "\n"))
	f.Add([]byte("-----BEGIN PGP SIGNED MESSAGE-----\n\n\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		for _, fs := range ParseChecksumFile(data) {
			if fs.Name == "" || !(strings.HasPrefix(fs.Sum, "sha256:") || strings.HasPrefix(fs.Sum, "sha512:")) {
				t.Fatalf("bad entry %+v", fs)
			}
		}
	})
}
