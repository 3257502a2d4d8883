package signature_test

import (
	"fmt"
	"strings"
	"testing"

	"github.com/quantix/cloudimages/catalog"
	"github.com/quantix/cloudimages/internal/testenv"
	"github.com/quantix/cloudimages/signature"
)

// BenchmarkChecksumFile puts what a signature adds to reading a checksum
// file side by side with reading it unsigned: a vendor-sized CHECKSUM of
// 200 lines, looked up as is, checked against a detached signature, and
// clearsigned. Run: go test -bench ChecksumFile -run - ./signature/
func BenchmarkChecksumFile(b *testing.B) {
	var sb strings.Builder
	for i := range 200 {
		fmt.Fprintf(&sb, "SHA256 (image-%03d.qcow2) = %064x\n", i, i)
	}
	data := []byte(sb.String())
	vendor := testenv.NewSigningKey(b, "vendor")
	keys, err := signature.Load(testenv.WriteKeyring(b, vendor))
	if err != nil {
		b.Fatal(err)
	}
	pins := []string{vendor.Fingerprint}
	sig, clear := vendor.DetachSign(data, true), vendor.ClearSign(data)
	lookup := func(b *testing.B, text []byte) {
		if _, err := catalog.LookupChecksum(text, "https://v.example/image-199.qcow2", "https://v.example/CHECKSUM"); err != nil {
			b.Fatal(err)
		}
	}
	b.Run("unsigned", func(b *testing.B) {
		for b.Loop() {
			lookup(b, data)
		}
	})
	b.Run("detached", func(b *testing.B) {
		for b.Loop() {
			res, err := keys.Detached(data, sig, pins)
			if err != nil || res.Status != signature.Verified {
				b.Fatal(res.Status, err)
			}
			lookup(b, res.Text)
		}
	})
	b.Run("clearsigned", func(b *testing.B) {
		for b.Loop() {
			res, err := keys.Clearsigned(clear, pins)
			if err != nil || res.Status != signature.Verified {
				b.Fatal(res.Status, err)
			}
			lookup(b, res.Text)
		}
	})
}
