package catalog_test

import (
	"testing"

	"github.com/quantix/cloudimages/catalog"
)

func TestVersionComesFromTheVendorsBuildElseTheChecksum(t *testing.T) {
	const sum = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
	for _, tc := range []struct{ listed, url, want string }{
		{"Fedora-Cloud-Base-Generic-41-1.4.x86_64.qcow2", "https://x/Fedora-Cloud-Base-Generic-41-1.4.x86_64.qcow2", "41-1.4"},
		// Rocky's "latest" URL: the checksum file lists the dated build.
		{"Rocky-9-GenericCloud-Base-9.5-20241118.0.x86_64.qcow2", "https://x/Rocky-9-GenericCloud-Base.latest.x86_64.qcow2", "9.5-20241118.0"},
		{"", "https://x/Fedora-Cloud-Base-Generic-42-1.1.x86_64.qcow2", "42-1.1"},
		// No build in the name: the checksum's first 12 hex digits.
		{"noble-server-cloudimg-amd64.img", "https://x/noble-server-cloudimg-amd64.img", "0123456789ab"},
		{"debian-12-generic-amd64-20241201-1948.qcow2", "https://x/debian-12-generic-amd64.qcow2", "0123456789ab"},
		{"cirros-0.6.3-x86_64-disk.img", "https://x/cirros-0.6.3-x86_64-disk.img", "0123456789ab"},
	} {
		if got := catalog.Version(tc.listed, tc.url, sum); got != tc.want {
			t.Errorf("Version(%q, %q) = %q, want %q", tc.listed, tc.url, got, tc.want)
		}
	}
}

func TestLookupFileSaysUnderWhichNameTheImageIsListed(t *testing.T) {
	data := []byte("SHA256 (Rocky-9-GenericCloud-Base-9.5-20241118.0.x86_64.qcow2) = " +
		"0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef\n")
	fs, err := catalog.LookupFile(data, "https://x/Rocky-9-GenericCloud-Base.latest.x86_64.qcow2",
		"https://x/Rocky-9-GenericCloud-Base.latest.x86_64.qcow2.CHECKSUM")
	if err != nil || fs.Name != "Rocky-9-GenericCloud-Base-9.5-20241118.0.x86_64.qcow2" {
		t.Fatalf("LookupFile = %+v, %v", fs, err)
	}
}
