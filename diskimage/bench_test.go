package diskimage

import (
	"os"
	"testing"
)

// BenchmarkInspectSparseQCOW2_10GiB inspects the header and tables of a
// 10 GiB qcow2 that qemu-img creates sparse (a few hundred KiB on disk);
// the goal is under 10 ms.
func BenchmarkInspectSparseQCOW2_10GiB(b *testing.B) {
	requireTools(b)
	path := create(b, "big.qcow2", "qcow2", "10G")
	f, err := os.Open(path)
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		info, err := Inspect(f, st.Size())
		if err != nil || info.VirtualSize != 10<<30 {
			b.Fatalf("Inspect = %+v, %v", info, err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Microseconds())/float64(b.N)/1000, "ms/op")
}
