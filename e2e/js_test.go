package e2e

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

// TestMatrixJSSDK drives the server with matrix-js-sdk under Node, as Element would: its
// InteractiveAuth handles the user-interactive auth flows. `make test` installs the SDK.
func TestMatrixJSSDK(t *testing.T) {
	node, err := exec.LookPath("node")
	if err != nil {
		t.Fatal("node is needed for the matrix-js-sdk tests (Node 20 or newer)")
	}
	if _, err := os.Stat(filepath.Join("js", "node_modules", "matrix-js-sdk")); err != nil {
		t.Fatal("matrix-js-sdk is not installed: run 'npm ci --prefix e2e/js' (make test does)")
	}
	s := Start(t)
	for _, script := range []string{"accounts.mjs"} {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		out, err := exec.CommandContext(ctx, node, filepath.Join("js", script), s.URL).CombinedOutput()
		cancel()
		if err != nil {
			t.Errorf("%s: %v\n%s", script, err, out)
		}
	}
}
