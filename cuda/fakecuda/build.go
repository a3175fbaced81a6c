package fakecuda

import (
	"crypto/sha256"
	_ "embed"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

//go:embed csrc/fakecuda.c
var source []byte

// ErrNoCompiler means no C compiler was found to build the fake library.
var ErrNoCompiler = errors.New("fakecuda: no C compiler to build the fake CUDA driver")

// builds caches BuildPath's results in this process, keyed by the defines.
var (
	buildsMu sync.Mutex
	builds   = map[string]buildResult{}
)

type buildResult struct {
	path string
	err  error
}

// Build compiles the fake driver library (once per process) and returns the
// path of the shared object. It skips the test when no C compiler is found
// and fails it when compiling fails.
func Build(t testing.TB) string {
	t.Helper()
	return BuildVariant(t)
}

// BuildVariant is Build with C preprocessor macros defined (see the package
// documentation's Variants), for example "FAKECUDA_NO_UUID_V2".
func BuildVariant(t testing.TB, defines ...string) string {
	t.Helper()
	path, err := BuildPath(defines...)
	if errors.Is(err, ErrNoCompiler) {
		t.Skipf("skipping: %v", err)
	}
	if err != nil {
		t.Fatalf("building the fake CUDA driver: %v", err)
	}
	return path
}

// BuildPath compiles the fake driver library with the given macros defined,
// with the C compiler cgo uses (`go env CC` when the go tool is on PATH,
// else $CC, else gcc), and returns
// the shared object's path. Results are cached in this process, and on disk
// in a temporary folder named after a hash of the source, compiler and
// macros, so that subprocesses reuse them. It returns an error matching
// ErrNoCompiler when the compiler is missing.
func BuildPath(defines ...string) (string, error) {
	for _, d := range defines {
		if d == "" || strings.ContainsAny(d, " \t\n=") || strings.HasPrefix(d, "-") {
			return "", fmt.Errorf("fakecuda: invalid macro name %q", d)
		}
	}
	key := strings.Join(defines, " ")
	buildsMu.Lock()
	defer buildsMu.Unlock()
	if r, ok := builds[key]; ok {
		return r.path, r.err
	}
	path, err := build(defines)
	if !errors.Is(err, ErrNoCompiler) {
		// A missing compiler may be installed later in a long-lived process;
		// anything else is final.
		builds[key] = buildResult{path, err}
	}
	return path, err
}

func build(defines []string) (string, error) {
	cc, err := compiler()
	if err != nil {
		return "", err
	}
	h := sha256.New()
	h.Write(source)
	fmt.Fprintf(h, "\x00%q\x00%q", cc, defines)
	dir := filepath.Join(os.TempDir(), "kiln-fakecuda-"+hex.EncodeToString(h.Sum(nil))[:16])
	lib := filepath.Join(dir, "libcuda-fake.so")
	if _, err := os.Stat(lib); err == nil {
		return lib, nil
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", fmt.Errorf("fakecuda: %w", err)
	}
	// Write the source and compile to unique names, then rename: builds in
	// other processes (go test runs packages in parallel) may share dir, and
	// must never see a half-written file.
	srcFile, err := os.CreateTemp(dir, "fakecuda-*.c")
	if err != nil {
		return "", fmt.Errorf("fakecuda: %w", err)
	}
	src := srcFile.Name()
	defer os.Remove(src)
	_, err = srcFile.Write(source)
	if closeErr := srcFile.Close(); err == nil {
		err = closeErr
	}
	if err != nil {
		return "", fmt.Errorf("fakecuda: writing %s: %w", src, err)
	}
	tmp, err := os.CreateTemp(dir, "build-*.so")
	if err != nil {
		return "", fmt.Errorf("fakecuda: %w", err)
	}
	tmp.Close()
	defer os.Remove(tmp.Name())
	args := append([]string{}, cc[1:]...)
	args = append(args, "-shared", "-fPIC", "-O1", "-Wall", "-o", tmp.Name())
	for _, d := range defines {
		args = append(args, "-D"+d)
	}
	args = append(args, src, "-lpthread")
	out, err := exec.Command(cc[0], args...).CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("fakecuda: %s %s: %v\n%s", cc[0], strings.Join(args, " "), err, out)
	}
	if err := os.Rename(tmp.Name(), lib); err != nil {
		return "", fmt.Errorf("fakecuda: %w", err)
	}
	return lib, nil
}

// compiler is the C compiler command cgo would use, split into words.
func compiler() ([]string, error) {
	var cc string
	if goTool, err := exec.LookPath("go"); err == nil {
		if out, err := exec.Command(goTool, "env", "CC").Output(); err == nil {
			cc = strings.TrimSpace(string(out))
		}
	}
	if cc == "" {
		cc = os.Getenv("CC")
	}
	if cc == "" {
		cc = "gcc"
	}
	words := strings.Fields(cc)
	if _, err := exec.LookPath(words[0]); err != nil {
		return nil, fmt.Errorf("%w (looked for %q: %v)", ErrNoCompiler, words[0], err)
	}
	return words, nil
}
