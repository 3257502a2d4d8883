package e2e

import (
	"context"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/quantix/cloudimages/internal/testenv"
)

// TestTemporalServerSaysWhatToDo: bin/temporal-server refuses a database
// URL it cannot use, and a store without Temporal's schema, with what to
// do, and exits non-zero rather than serving half.
func TestTemporalServerSaysWhatToDo(t *testing.T) {
	bin := testenv.TemporalServerBinary(t)
	run := func(t *testing.T, args ...string) string {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		out, err := exec.CommandContext(ctx, bin, args...).CombinedOutput()
		if err == nil {
			t.Fatalf("temporal-server %s succeeded:\n%s", strings.Join(args, " "), out)
		}
		if ctx.Err() != nil {
			t.Fatalf("temporal-server %s did not exit within 2 minutes", strings.Join(args, " "))
		}
		return string(out)
	}
	t.Run("not a PostgreSQL URL", func(t *testing.T) {
		out := run(t, "setup-schema", "--database-url", "mysql://db/temporal")
		if !strings.Contains(out, "want postgres://") {
			t.Errorf("output does not say what URL it takes:\n%s", out)
		}
	})
	t.Run("an sslmode it does not know", func(t *testing.T) {
		out := run(t, "start", "--database-url", "postgres://u@127.0.0.1:5432/temporal?sslmode=sometimes")
		if !strings.Contains(out, `sslmode "sometimes"`) {
			t.Errorf("output does not name the sslmode:\n%s", out)
		}
	})
	t.Run("a database without the schema", func(t *testing.T) {
		empty, ok := testenv.Postgres(t)
		if !ok {
			testenv.SkipUnlessCI(t, "%s is not set", testenv.PostgresEnv)
		}
		out := run(t, "start", "--database-url", empty, "--listen", "127.0.0.1:"+strconv.Itoa(testenv.FreePort(t)))
		if !strings.Contains(out, "setup-schema") {
			t.Errorf("output does not say to run setup-schema:\n%s", out)
		}
	})
}
