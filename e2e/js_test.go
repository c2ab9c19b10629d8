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
	alice, bob := s.NewUser(t, "jsalice"), s.NewUser(t, "jsbob")
	for _, c := range []struct {
		script string
		args   []string
	}{
		{"accounts.mjs", nil},
		{"sync.mjs", []string{string(alice.UserID), alice.AccessToken, string(alice.DeviceID), string(bob.UserID), bob.AccessToken, string(bob.DeviceID)}},
	} {
		t.Run(c.script, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			out, err := exec.CommandContext(ctx, node, append([]string{filepath.Join("js", c.script), s.URL}, c.args...)...).CombinedOutput()
			if err != nil {
				t.Errorf("%s: %v\n%s", c.script, err, out)
			}
		})
	}
}
