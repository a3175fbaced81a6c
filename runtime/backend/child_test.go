package backend

import (
	"os"
	"os/exec"
	"testing"
)

// runChildTest runs one test of this binary in a child process with env
// added, failing t with the child's output if it fails.
func runChildTest(t *testing.T, name string, env ...string) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^"+name+"$", "-test.v")
	cmd.Env = append(os.Environ(), env...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("child %s failed: %v\n%s", name, err, out)
	}
}
