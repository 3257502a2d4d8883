package catalog

import "github.com/quantix/cloudimages/signature"

// gib is a gibibyte, for the minimum disk sizes below.
const gib = 1 << 30

// Builtin is the catalog used when --catalog is not given. Checksums come
// from the vendors' checksum files at download time, so an entry stays
// right when the vendor rebuilds the image under the same name. Where the
// vendor signs that file, the entry pins its key (signing_keys): the keys
// of Fedora, Rocky and AlmaLinux ship in the binary, Ubuntu's and
// Debian's come from the worker's --keyring (until then those images say
// signature "not_checked"). Which signature file each vendor publishes was
// taken from its documentation and could not be fetched from where this
// was written; a wrong one fails with signature_invalid, never passes.
// MinDiskBytes is at least the image's virtual size, rounded up.
var Builtin = []Entry{
	{ID: "cirros-0.6.3", Name: "CirrOS 0.6.3", OS: "cirros", Version: "0.6.3", Arch: "x86_64", Format: "qcow2",
		URL:         "https://download.cirros-cloud.net/0.6.3/cirros-0.6.3-x86_64-disk.img",
		ChecksumURL: "https://download.cirros-cloud.net/0.6.3/SHA256SUMS", SizeBytes: 21692416,
		// CirrOS runs its own small cirros-init (metadata, SSH keys), not cloud-init.
		DefaultUser: "cirros", CloudInit: false, MinDiskBytes: 1 * gib, Firmware: "both"},
	{ID: "ubuntu-24.04", Name: "Ubuntu 24.04 LTS (Noble Numbat)", OS: "ubuntu", Version: "24.04", Arch: "amd64", Format: "qcow2",
		URL:         "https://cloud-images.ubuntu.com/releases/24.04/release/ubuntu-24.04-server-cloudimg-amd64.img",
		ChecksumURL: "https://cloud-images.ubuntu.com/releases/24.04/release/SHA256SUMS", SizeBytes: 600000000,
		SignatureURL: "https://cloud-images.ubuntu.com/releases/24.04/release/SHA256SUMS.gpg", SigningKeys: []string{signature.Ubuntu},
		DefaultUser: "ubuntu", CloudInit: true, MinDiskBytes: 4 * gib, Firmware: "both"},
	{ID: "ubuntu-22.04", Name: "Ubuntu 22.04 LTS (Jammy Jellyfish)", OS: "ubuntu", Version: "22.04", Arch: "amd64", Format: "qcow2",
		URL:         "https://cloud-images.ubuntu.com/releases/22.04/release/ubuntu-22.04-server-cloudimg-amd64.img",
		ChecksumURL: "https://cloud-images.ubuntu.com/releases/22.04/release/SHA256SUMS", SizeBytes: 660000000,
		SignatureURL: "https://cloud-images.ubuntu.com/releases/22.04/release/SHA256SUMS.gpg", SigningKeys: []string{signature.Ubuntu},
		DefaultUser: "ubuntu", CloudInit: true, MinDiskBytes: 3 * gib, Firmware: "both"},
	{ID: "debian-12", Name: "Debian 12 (bookworm) generic cloud", OS: "debian", Version: "12", Arch: "amd64", Format: "qcow2",
		URL:         "https://cloud.debian.org/images/cloud/bookworm/latest/debian-12-genericcloud-amd64.qcow2",
		ChecksumURL: "https://cloud.debian.org/images/cloud/bookworm/latest/SHA512SUMS", SizeBytes: 420000000,
		SignatureURL: "https://cloud.debian.org/images/cloud/bookworm/latest/SHA512SUMS.sign", SigningKeys: []string{signature.DebianCDKey},
		DefaultUser: "debian", CloudInit: true, MinDiskBytes: 3 * gib, Firmware: "both"},
	{ID: "fedora-41", Name: "Fedora Cloud 41", OS: "fedora", Version: "41", Arch: "x86_64", Format: "qcow2",
		URL:         "https://download.fedoraproject.org/pub/fedora/linux/releases/41/Cloud/x86_64/images/Fedora-Cloud-Base-Generic-41-1.4.x86_64.qcow2",
		ChecksumURL: "https://download.fedoraproject.org/pub/fedora/linux/releases/41/Cloud/x86_64/images/Fedora-Cloud-41-1.4-x86_64-CHECKSUM", SizeBytes: 560000000,
		Clearsigned: true, SigningKeys: []string{signature.Fedora41},
		DefaultUser: "fedora", CloudInit: true, MinDiskBytes: 5 * gib, Firmware: "both"},
	{ID: "rocky-9", Name: "Rocky Linux 9 GenericCloud", OS: "rocky", Version: "9", Arch: "x86_64", Format: "qcow2",
		URL:         "https://dl.rockylinux.org/pub/rocky/9/images/x86_64/Rocky-9-GenericCloud-Base.latest.x86_64.qcow2",
		ChecksumURL: "https://dl.rockylinux.org/pub/rocky/9/images/x86_64/CHECKSUM", SizeBytes: 620000000,
		SignatureURL: "https://dl.rockylinux.org/pub/rocky/9/images/x86_64/CHECKSUM.sig", SigningKeys: []string{signature.Rocky9},
		DefaultUser: "rocky", CloudInit: true, MinDiskBytes: 10 * gib, Firmware: "both"},
	{ID: "almalinux-9", Name: "AlmaLinux 9 GenericCloud", OS: "almalinux", Version: "9", Arch: "x86_64", Format: "qcow2",
		URL:         "https://repo.almalinux.org/almalinux/9/cloud/x86_64/images/AlmaLinux-9-GenericCloud-latest.x86_64.qcow2",
		ChecksumURL: "https://repo.almalinux.org/almalinux/9/cloud/x86_64/images/CHECKSUM", SizeBytes: 560000000,
		SignatureURL: "https://repo.almalinux.org/almalinux/9/cloud/x86_64/images/CHECKSUM.asc", SigningKeys: []string{signature.AlmaLinux9},
		DefaultUser: "almalinux", CloudInit: true, MinDiskBytes: 10 * gib, Firmware: "both"},

	// The entries below were added for compressed and raw images (and the
	// two distributions LimiQuantix's catalog has). Their URLs and checksum
	// file names are taken from the vendors' documentation as known when
	// written: they could not be fetched from where this was written, so
	// none has been downloaded. A vendor that renames a file breaks its
	// entry with checksum_not_found, not with a wrong image.
	{ID: "freebsd-14.2", Name: "FreeBSD 14.2 BASIC-CLOUDINIT (UFS)", OS: "freebsd", Version: "14.2", Arch: "amd64", Format: "qcow2",
		URL:         "https://download.freebsd.org/releases/VM-IMAGES/14.2-RELEASE/amd64/Latest/FreeBSD-14.2-RELEASE-amd64-BASIC-CLOUDINIT-ufs.qcow2.xz",
		ChecksumURL: "https://download.freebsd.org/releases/VM-IMAGES/14.2-RELEASE/amd64/Latest/CHECKSUM.SHA256", SizeBytes: 420000000,
		// The checksum file lists the .xz, the bytes downloaded: those are what is verified.
		DefaultUser: "freebsd", CloudInit: true, MinDiskBytes: 6 * gib, Firmware: "both"},
	{ID: "openwrt-23.05.5", Name: "OpenWrt 23.05.5 x86-64 (ext4, BIOS)", OS: "openwrt", Version: "23.05.5", Arch: "x86_64", Format: "raw",
		URL:         "https://downloads.openwrt.org/releases/23.05.5/targets/x86/64/openwrt-23.05.5-x86-64-generic-ext4-combined.img.gz",
		ChecksumURL: "https://downloads.openwrt.org/releases/23.05.5/targets/x86/64/sha256sums", SizeBytes: 12000000,
		// No cloud-init: root without a password on the console; configure through UCI.
		DefaultUser: "root", CloudInit: false, MinDiskBytes: 1 * gib, Firmware: "bios"},
	{ID: "debian-12-raw", Name: "Debian 12 (bookworm) generic cloud, raw", OS: "debian", Version: "12", Arch: "amd64", Format: "raw",
		URL:         "https://cloud.debian.org/images/cloud/bookworm/latest/debian-12-genericcloud-amd64.raw",
		ChecksumURL: "https://cloud.debian.org/images/cloud/bookworm/latest/SHA512SUMS", SizeBytes: 3 * gib,
		SignatureURL: "https://cloud.debian.org/images/cloud/bookworm/latest/SHA512SUMS.sign", SigningKeys: []string{signature.DebianCDKey},
		DefaultUser: "debian", CloudInit: true, MinDiskBytes: 3 * gib, Firmware: "both"},
	// CentOS Stream's cloud CHECKSUM is not known to be signed, so the
	// entry does not claim it is (with its key shipped, a wrong claim
	// would fail every download); a catalog whose mirror publishes it
	// signed pins signature.CentOS.
	{ID: "centos-stream-9", Name: "CentOS Stream 9 GenericCloud", OS: "centos", Version: "9", Arch: "x86_64", Format: "qcow2",
		URL:         "https://cloud.centos.org/centos/9-stream/x86_64/images/CentOS-Stream-GenericCloud-9-latest.x86_64.qcow2",
		ChecksumURL: "https://cloud.centos.org/centos/9-stream/x86_64/images/CHECKSUM", SizeBytes: 1200000000,
		DefaultUser: "cloud-user", CloudInit: true, MinDiskBytes: 10 * gib, Firmware: "both"},
	{ID: "opensuse-leap-15.6", Name: "openSUSE Leap 15.6 Minimal-VM (Cloud)", OS: "opensuse", Version: "15.6", Arch: "x86_64", Format: "qcow2",
		URL:         "https://download.opensuse.org/distribution/leap/15.6/appliances/openSUSE-Leap-15.6-Minimal-VM.x86_64-Cloud.qcow2",
		ChecksumURL: "https://download.opensuse.org/distribution/leap/15.6/appliances/openSUSE-Leap-15.6-Minimal-VM.x86_64-Cloud.qcow2.sha256", SizeBytes: 300000000,
		DefaultUser: "opensuse", CloudInit: true, MinDiskBytes: 24 * gib, Firmware: "both"},
}
