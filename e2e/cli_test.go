package e2e

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/quantix/cloudimages/internal/testenv"
)

// TestBadSettingsExitWithUsage runs the built binary's subcommands with
// bad settings: each must exit 2 with a message that names the setting
// and says what to give instead, before it starts anything.
func TestBadSettingsExitWithUsage(t *testing.T) {
	pool := "p=" + t.TempDir()
	cases := []struct {
		name string
		args []string
		env  []string
		want []string // in stderr
	}{
		{"pool without =", []string{"nodeagent", "--node-id", "n1", "--node-token", "x", "--pool", "/var/lib/pool"},
			nil, []string{`--pool "/var/lib/pool": want ID=DIR`}},
		{"pool given twice", []string{"nodeagent", "--node-id", "n1", "--node-token", "x", "--pool", pool, "--pool", pool},
			nil, []string{`pool "p" is given twice`}},
		{"no pool", []string{"nodeagent", "--node-id", "n1", "--node-token", "x"},
			[]string{"CLOUDIMAGES_POOLS="}, []string{"at least one --pool ID=DIR is required"}},
		{"missing node id", []string{"nodeagent", "--node-token", "x", "--pool", pool},
			[]string{"CLOUDIMAGES_NODE_ID="}, []string{"--node-id is required"}},
		{"missing node token", []string{"nodeagent", "--node-id", "n1", "--pool", pool},
			[]string{"CLOUDIMAGES_NODE_TOKEN="}, []string{"--node-token is required"}},
		{"max concurrent not a number", []string{"nodeagent", "--node-id", "n1", "--node-token", "x", "--pool", pool},
			[]string{"CLOUDIMAGES_MAX_CONCURRENT=many"}, []string{`CLOUDIMAGES_MAX_CONCURRENT="many": want a whole number`}},
		{"max concurrent zero", []string{"nodeagent", "--node-id", "n1", "--node-token", "x", "--pool", pool, "--max-concurrent", "0"},
			nil, []string{"--max-concurrent must be at least 1"}},
		{"bad database url", []string{"api", "--database-url", "mysql://db/x"},
			nil, []string{"--database-url", "only postgres://… and sqlite:PATH are supported"}},
		{"postgres url without database", []string{"worker", "--database-url", "postgres://u@host:5432"},
			nil, []string{"--database-url", "want postgres://USER@HOST:PORT/DBNAME"}},
		{"empty temporal address", []string{"worker", "--temporal-address", ""},
			nil, []string{"--temporal-address is empty"}},
		{"negative no-node timeout", []string{"worker", "--no-node-timeout", "-1s"},
			nil, []string{"--no-node-timeout", "must be positive"}},
		{"bad duration in env", []string{"worker"},
			[]string{"CLOUDIMAGES_NODE_GRACE=soon"}, []string{`CLOUDIMAGES_NODE_GRACE="soon": want a duration`}},
		{"unknown flag", []string{"api", "--listn", "127.0.0.1:1"},
			nil, []string{"flag provided but not defined: -listn", "Run 'cloudimages api --help'"}},
		{"stray argument", []string{"worker", "now"},
			nil, []string{`unexpected argument "now"`}},
		{"unknown command", []string{"serve"},
			nil, []string{`unknown command "serve"`}},
		{"dev with one agent address", []string{"dev", "--agent-listen", "127.0.0.1:9091"},
			nil, []string{"--agent-listen", "want 2 host:port"}},
		{"dev with too few agent addresses for --agents", []string{"dev", "--agents", "3", "--agent-listen", "127.0.0.1:9091,127.0.0.1:9092"},
			nil, []string{"--agent-listen", "want 3 host:port"}},
		{"dev with no agents", []string{"dev", "--agents", "0"},
			nil, []string{"--agents 0: want between 1 and 64"}},
		{"dev with a bad listen address", []string{"dev", "--listen", "8080"},
			nil, []string{`"8080": want host:port`}},
	}
	bin := testenv.Binary(t)
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			code, stderr := runBinary(t, bin, c.args, c.env)
			if code != 2 {
				t.Errorf("exit code %d, want 2; stderr:\n%s", code, stderr)
			}
			for _, w := range c.want {
				if !strings.Contains(stderr, w) {
					t.Errorf("stderr lacks %q:\n%s", w, stderr)
				}
			}
		})
	}
}

// TestDevWithoutTemporalCLISaysRunMakeTools: with no Temporal server and
// no temporal CLI, `cloudimages dev` says how to get one, and starts nothing.
func TestDevWithoutTemporalCLISaysRunMakeTools(t *testing.T) {
	dataDir := t.TempDir()
	port := strconv.Itoa(testenv.FreePort(t))
	code, stderr := runBinary(t, testenv.Binary(t), []string{"dev", "--data-dir", dataDir,
		"--temporal-address", "127.0.0.1:" + port, "--temporal-cli", filepath.Join(dataDir, "no-temporal")}, nil)
	if code != 1 {
		t.Errorf("exit code %d, want 1; stderr:\n%s", code, stderr)
	}
	for _, w := range []string{"no-temporal", "make tools", "TEMPORAL_ADDRESS"} {
		if !strings.Contains(stderr, w) {
			t.Errorf("stderr lacks %q:\n%s", w, stderr)
		}
	}
	if _, err := os.Stat(filepath.Join(dataDir, "logs", "temporal.log")); err == nil {
		t.Error("a temporal log exists: something was started")
	}
}

func runBinary(t *testing.T, bin string, args, env []string) (int, string) {
	t.Helper()
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(), env...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	err := cmd.Run()
	var exit *exec.ExitError
	switch {
	case err == nil:
		return 0, stderr.String()
	case errors.As(err, &exit):
		return exit.ExitCode(), stderr.String()
	default:
		t.Fatalf("run %s %v: %v", bin, args, err)
		return 0, ""
	}
}
