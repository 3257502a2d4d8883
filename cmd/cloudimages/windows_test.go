package main_test

import (
	"strings"
	"testing"
)

// The worker's cluster-wide transfer windows are checked before anything
// starts, from flags and from the environment alike, and --help shows them.
func TestWorkerRefusesBadTransferWindows(t *testing.T) {
	for _, tc := range []struct {
		name string
		env  []string
		args []string
		want string
	}{
		{"bad window flag", nil, []string{"--transfer-windows", "22-06"}, "HH:MM-HH:MM"},
		{"bad window env", []string{"CLOUDIMAGES_TRANSFER_WINDOWS=22:00-06:00,25:00-26:00"}, nil, "HH:MM-HH:MM"},
		{"bad zone flag", nil, []string{"--transfer-windows", "22:00-06:00", "--transfer-time-zone", "Mars/Olympus"}, "IANA"},
		{"bad zone env", []string{"CLOUDIMAGES_TRANSFER_TIME_ZONE=Local"}, []string{"--transfer-windows", "22:00-06:00"}, "IANA"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, out := run(t, tc.env, append([]string{"worker"}, tc.args...)...)
			if code != 2 || !strings.Contains(out, "--transfer-windows") || !strings.Contains(out, tc.want) {
				t.Fatalf("exit %d, want 2 with a message naming --transfer-windows and %q:\n%s", code, tc.want, out)
			}
		})
	}
	_, out := run(t, nil, "worker", "--help")
	for _, want := range []string{"--transfer-windows", "env CLOUDIMAGES_TRANSFER_WINDOWS", "--transfer-time-zone", "env CLOUDIMAGES_TRANSFER_TIME_ZONE, default UTC"} {
		if !strings.Contains(out, want) {
			t.Errorf("worker --help lacks %q:\n%s", want, out)
		}
	}
}
