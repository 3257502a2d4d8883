package nodeagent

import (
	"slices"
	"testing"
)

// TestConvertProgressReadsQemuImgLines feeds qemu-img -p's output in
// pieces cut anywhere, with what else may appear: only whole progress
// lines are reported, and nothing out of 0–100.
func TestConvertProgressReadsQemuImgLines(t *testing.T) {
	out := "    (0.00/100%)\r    (1.56/100%)\r    (3.1" + "2/100%)\r" +
		"some other line\n    (NaN/100%)\r    (-1.00/100%)\r    (250.00/100%)\r    (12/50%)\r" +
		"    (99.99/100%)\r    (100.00/100%)\r\n    (100.00/100%)\r    (50.00/10"
	for _, cut := range []int{1, 3, 7, 64, len(out)} {
		var got []float64
		p := &convertProgress{report: func(pct float64) { got = append(got, pct) }}
		for rest := out; rest != ""; {
			n := min(cut, len(rest))
			if w, err := p.Write([]byte(rest[:n])); w != n || err != nil {
				t.Fatalf("Write = %d, %v", w, err)
			}
			rest = rest[n:]
		}
		if want := []float64{0, 1.56, 3.12, 99.99, 100, 100}; !slices.Equal(got, want) {
			t.Errorf("written %d bytes at a time: reported %v, want %v", cut, got, want)
		}
	}
}
