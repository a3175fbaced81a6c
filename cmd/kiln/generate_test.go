package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/kiln-gpu/kiln/models/builtin"
)

// childArgsEnv makes this test binary run kiln itself instead of its tests:
// the value is the JSON list of arguments. The CUDA checks need that, as
// TestMain points this process at a nonexistent driver library.
const childArgsEnv = "KILN_CMD_TEST_CHILD_ARGS"

// The driver library setting before TestMain replaced it (package variables
// are initialised before TestMain runs).
var realCUDALibrary, realCUDALibrarySet = os.LookupEnv("KILN_CUDA_LIBRARY")

func init() {
	v := os.Getenv(childArgsEnv)
	if v == "" {
		return
	}
	var args []string
	if err := json.Unmarshal([]byte(v), &args); err != nil {
		fmt.Fprintf(os.Stderr, "%s: %v\n", childArgsEnv, err)
		os.Exit(3)
	}
	os.Exit(run(context.Background(), args, os.Stdout, os.Stderr))
}

// runKilnChild runs kiln in a child process that loads the real driver
// library (KILN_TEST_REAL_LIBCUDA, which the GPU suite sets, else the
// setting this process started with, else the default search).
func runKilnChild(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	argsJSON, err := json.Marshal(args)
	if err != nil {
		t.Fatal(err)
	}
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "KILN_CUDA_LIBRARY=") && !strings.HasPrefix(kv, childArgsEnv+"=") {
			env = append(env, kv)
		}
	}
	if lib := os.Getenv("KILN_TEST_REAL_LIBCUDA"); lib != "" {
		env = append(env, "KILN_CUDA_LIBRARY="+lib)
	} else if realCUDALibrarySet {
		env = append(env, "KILN_CUDA_LIBRARY="+realCUDALibrary)
	}
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(env, childArgsEnv+"="+string(argsJSON))
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err = cmd.Run()
	var exitErr *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &exitErr):
		code = exitErr.ExitCode()
	default:
		t.Fatalf("running kiln %q in a child: %v", args, err)
	}
	return code, out.String(), errOut.String()
}

// sharedModel finds a model of the shared folder: in KILN_TEST_MODELS (the
// GPU bundle sets it), else under sharedFile's folder; it skips the test
// when the file is absent.
func sharedModel(t *testing.T, name string) string {
	t.Helper()
	if d := os.Getenv("KILN_TEST_MODELS"); d != "" {
		if p := filepath.Join(d, name); fileExists(p) {
			return p
		}
	}
	return sharedFile(t, filepath.Join("models", name))
}

// builtinModelFile writes the embedded built-in model to a temporary file,
// for tests that need a GGUF path without ../shared.
func builtinModelFile(t *testing.T) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), builtin.Name+".gguf")
	if err := os.WriteFile(p, builtin.GGUF(), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

// storiesReferenceText reads the reference text of stories260K.gguf from the
// shared folder's models/README.md: the first fenced block of the model's
// section, without the block's final newline (which the README says is not
// part of the text).
func storiesReferenceText(t *testing.T) string {
	t.Helper()
	data, err := os.ReadFile(sharedModel(t, "README.md")) // the GPU bundle carries a copy
	if err != nil {
		t.Fatal(err)
	}
	s := string(data)
	_, section, ok := strings.Cut(s, "## stories260K.gguf")
	if !ok {
		t.Fatal("models/README.md has no stories260K.gguf section")
	}
	_, after, ok := strings.Cut(section, "prints\n  exactly this text")
	if !ok {
		after = section
	}
	_, block, ok := strings.Cut(after, "```\n")
	if !ok {
		t.Fatal("models/README.md: no fenced reference text in the stories260K.gguf section")
	}
	text, _, ok := strings.Cut(block, "\n```")
	if !ok || !strings.HasPrefix(text, "Once upon a time") {
		t.Fatalf("models/README.md: the reference block %q does not look like the stories260K text", text)
	}
	return text
}

// statsLine matches generate's statistics line on stderr.
var statsLine = regexp.MustCompile(`kiln: prompt (\d+) tokens in [0-9.]+ s \(([0-9.]+|-) tok/s\); generated (\d+) tokens, (\d+) decode steps in [0-9.]+ s \(([0-9.]+|-) tok/s\); stopped: ([^;]+); seed (\d+)`)

func checkGenerateStats(t *testing.T, stderr string, promptTokens, generated int, device string) {
	t.Helper()
	m := statsLine.FindStringSubmatch(stderr)
	if m == nil {
		t.Fatalf("no statistics line on stderr:\n%s", stderr)
	}
	if m[1] != fmt.Sprint(promptTokens) || m[3] != fmt.Sprint(generated) || m[4] != fmt.Sprint(generated-1) || m[6] != "-n reached" {
		t.Errorf("statistics %q: want %d prompt tokens, %d generated in %d decode steps, stopped by -n", m[0], promptTokens, generated, generated-1)
	}
	if m[5] == "-" {
		t.Errorf("statistics %q: no decode rate", m[0])
	}
	if !strings.Contains(stderr, " on "+device) {
		t.Errorf("stderr does not name the device %q:\n%s", device, stderr)
	}
}

// TestGenerateStories260KReferenceText is the real-model check: greedy
// decoding of 200 tokens from BOS prints exactly the reference text of
// ../shared/models/README.md, on the CPU.
func TestGenerateStories260KReferenceText(t *testing.T) {
	model := sharedModel(t, "stories260K.gguf")
	want := storiesReferenceText(t)
	code, out, errOut := runKiln(t, "generate", "-model", model, "-temp", "0", "-n", "200", "-device", "cpu")
	if code != 0 {
		t.Fatalf("exit %d, stderr:\n%s", code, errOut)
	}
	if out != want {
		t.Errorf("stdout differs from the reference text\n got: %q\nwant: %q", out, want)
	}
	checkGenerateStats(t, errOut, 1, 200, "cpu")
	if !strings.Contains(errOut, "loading [") || !strings.Contains(errOut, "100%") {
		t.Errorf("no loading bar on stderr:\n%s", errOut)
	}
}

// TestGenerateStories260KReferenceTextCUDA is the same check on cuda:0, in a
// child process that loads the real driver; it skips without a usable
// device.
func TestGenerateStories260KReferenceTextCUDA(t *testing.T) {
	model := sharedModel(t, "stories260K.gguf")
	want := storiesReferenceText(t)
	code, out, errOut := runKilnChild(t, "info", "-json")
	var info infoReport
	if code != 0 || json.Unmarshal([]byte(out), &info) != nil {
		t.Fatalf("kiln info -json in a child: exit %d, output %s, stderr %s", code, out, errOut)
	}
	if len(info.Devices) == 0 {
		t.Skipf("no CUDA device usable (%s; %s)", info.DriverError, info.AutoReason)
	}
	code, out, errOut = runKilnChild(t, "generate", "-model", model, "-temp", "0", "-n", "200", "-device", "cuda:0")
	if code != 0 {
		t.Fatalf("exit %d, stderr:\n%s", code, errOut)
	}
	if out != want {
		t.Errorf("stdout on cuda:0 differs from the reference text\n got: %q\nwant: %q", out, want)
	}
	checkGenerateStats(t, errOut, 1, 200, "cuda:0")
}

// builtinReference is the part of models/builtin/testdata/reference.json
// (written by scripts/train-builtin/train.py from its float64 reference
// forward pass) that the CLI tests use.
type builtinReference struct {
	Model   string `json:"model"`
	FromBOS struct {
		GreedyIDs  []int32 `json:"greedy_ids"`
		GreedyText string  `json:"greedy_text"`
	} `json:"from_bos"`
	FromBOS200 struct {
		GreedyIDs  []int32 `json:"greedy_ids"`
		GreedyText string  `json:"greedy_text"`
	} `json:"from_bos_200"`
	FromPrompt struct {
		PromptText string  `json:"prompt_text"`
		GreedyIDs  []int32 `json:"greedy_ids"`
		GreedyText string  `json:"greedy_text"`
	} `json:"from_prompt"`
}

func readBuiltinReference(t *testing.T) builtinReference {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("..", "..", "models", "builtin", "testdata", "reference.json"))
	if err != nil {
		t.Fatal(err)
	}
	var ref builtinReference
	if err := json.Unmarshal(data, &ref); err != nil {
		t.Fatalf("reference.json: %v", err)
	}
	if len(ref.FromBOS.GreedyIDs) == 0 || len(ref.FromBOS200.GreedyIDs) == 0 || len(ref.FromPrompt.GreedyIDs) == 0 {
		t.Fatalf("reference.json lacks greedy ids: %+v", ref)
	}
	return ref
}

// TestGenerateBuiltinModel runs generate without -model: the built-in model
// at temperature 0 prints the greedy text of the float64 reference.
func TestGenerateBuiltinModel(t *testing.T) {
	ref := readBuiltinReference(t)
	for _, c := range []struct {
		n    int
		want string
	}{
		{len(ref.FromBOS.GreedyIDs), ref.FromBOS.GreedyText},
		{len(ref.FromBOS200.GreedyIDs), ref.FromBOS200.GreedyText},
	} {
		code, out, errOut := runKiln(t, "generate", "-temp", "0", "-n", fmt.Sprint(c.n), "-device", "cpu")
		if code != 0 {
			t.Fatalf("-n %d: exit %d, stderr:\n%s", c.n, code, errOut)
		}
		if out != c.want {
			t.Errorf("-n %d: stdout differs from reference.json\n got: %q\nwant: %q", c.n, out, c.want)
		}
		checkGenerateStats(t, errOut, 1, c.n, "cpu")
		if !strings.Contains(errOut, builtin.Name+" (built in)") {
			t.Errorf("stderr does not name the built-in model:\n%s", errOut)
		}
	}

	// With a prompt, the continuation is printed without the prompt. The
	// reference's text is SentencePiece's decoding of the generated ids
	// alone, which drops the leading space of its first piece; printed
	// after a prompt, that space belongs to the text.
	p := ref.FromPrompt
	code, out, errOut := runKiln(t, "generate", "-prompt", p.PromptText, "-temp", "0", "-n", fmt.Sprint(len(p.GreedyIDs)), "-device", "cpu")
	if code != 0 {
		t.Fatalf("-prompt %q: exit %d, stderr:\n%s", p.PromptText, code, errOut)
	}
	want := p.GreedyText
	if pieces := builtinPieces(t); strings.HasPrefix(pieces[p.GreedyIDs[0]], "▁") {
		want = " " + want
	}
	if out != want {
		t.Errorf("-prompt %q: stdout differs from reference.json\n got: %q\nwant: %q", p.PromptText, out, want)
	}
	if strings.Contains(out, p.PromptText) && !strings.Contains(want, p.PromptText) {
		t.Errorf("the prompt is repeated in the output %q", out)
	}
}

// builtinPieces is the vocabulary of the built-in model, read from its GGUF
// metadata.
func builtinPieces(t *testing.T) []string {
	t.Helper()
	f, err := builtin.Open()
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	pieces, err := f.Strings("tokenizer.ggml.tokens")
	if err != nil {
		t.Fatal(err)
	}
	return pieces
}

// TestGenerateSampledIsReproducible: a seed fixes the sampled text, and the
// seed is printed so that a run without -seed can be repeated.
func TestGenerateSampledIsReproducible(t *testing.T) {
	args := []string{"generate", "-n", "40", "-temp", "1", "-top-k", "0", "-top-p", "1", "-min-p", "0", "-device", "cpu"}
	code, first, errOut := runKiln(t, args...)
	if code != 0 {
		t.Fatalf("exit %d, stderr:\n%s", code, errOut)
	}
	m := statsLine.FindStringSubmatch(errOut)
	if m == nil {
		t.Fatalf("no statistics on stderr:\n%s", errOut)
	}
	code, again, errOut := runKiln(t, append(args, "-seed", m[7])...)
	if code != 0 || again != first {
		t.Errorf("-seed %s: exit %d, text %q; the first run (same seed) printed %q\n%s", m[7], code, again, first, errOut)
	}
	seed, err := strconv.ParseInt(m[7], 10, 64)
	if err != nil {
		t.Fatal(err)
	}
	otherSeed := strconv.FormatInt(seed^1, 10)
	code, other, errOut := runKiln(t, append(args, "-seed", otherSeed)...)
	if code != 0 || other == first {
		t.Errorf("seed %s: exit %d, text %q; seed %s printed the same: sampling ignores the seed\n%s", otherSeed, code, other, m[7], errOut)
	}
}

func TestGenerateErrors(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "missing.gguf")
	truncated := filepath.Join(t.TempDir(), "truncated.gguf")
	if err := os.WriteFile(truncated, builtin.GGUF()[:1000], 0o644); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"-model", missing}, 1, "missing.gguf"},
		{[]string{"-model", truncated, "-device", "cpu"}, 1, "truncated.gguf"},
		{[]string{"-n", "0"}, 2, "-n 0"},
		{[]string{"-n", "-5"}, 2, "-n -5"},
		{[]string{"-tp", "0"}, 2, "-tp 0"},
		// kiln-austen has 2 KV heads: they do not split over 3 devices.
		{[]string{"-tp", "3", "-device", "cpu"}, 1, "multiples of 3"},
		{[]string{"-temp", "-1", "-device", "cpu"}, 2, "emperature"},
		{[]string{"-device", "tpu:0"}, 1, `unknown device "tpu:0"`},
		{[]string{"-device", "cuda:0"}, 1, "cuda"},
		{[]string{"-device", "cpu", "extra"}, 2, "unexpected arguments"},
		{[]string{"-device", "cpu", "-ctx", "4", "-prompt", "It is a truth universally acknowledged"}, 2, "context length 4"},
	} {
		code, out, errOut := runKiln(t, append([]string{"generate"}, c.args...)...)
		if code != c.code || !strings.Contains(errOut, c.want) {
			t.Errorf("kiln generate %q: exit %d, stderr %q; want exit %d and %q", c.args, code, errOut, c.code, c.want)
		}
		if out != "" {
			t.Errorf("kiln generate %q printed %q on stdout", c.args, out)
		}
		if strings.Contains(errOut, "panic") {
			t.Errorf("kiln generate %q panicked: %s", c.args, errOut)
		}
	}
}

// TestGenerateStopsAtAFullContext: with a context of 8 tokens, generation
// stops after 8 tokens are in the sequence and says why.
func TestGenerateStopsAtAFullContext(t *testing.T) {
	code, out, errOut := runKiln(t, "generate", "-ctx", "8", "-n", "100", "-temp", "0", "-device", "cpu")
	if code != 0 {
		t.Fatalf("exit %d, stderr:\n%s", code, errOut)
	}
	m := statsLine.FindStringSubmatch(errOut)
	// BOS and 7 tokens fill the context; the 8th generated token comes from
	// the logits after the 8th position and is printed, but not fed back.
	if m == nil || m[3] != "8" || m[4] != "7" || !strings.Contains(m[6], "context of 8 tokens is full") {
		t.Errorf("statistics %q, want 8 tokens in 7 decode steps stopped by the full context", m)
	}
	if out == "" {
		t.Error("no text printed")
	}
}

// TestGenerateTensorParallel: -tp 2 on the CPU (two CPU backends standing
// for two devices) prints the same greedy text as one device, and says so.
func TestGenerateTensorParallel(t *testing.T) {
	args := []string{"generate", "-n", "40", "-temp", "0", "-device", "cpu"}
	code, one, errOut := runKiln(t, args...)
	if code != 0 {
		t.Fatalf("-tp 1: exit %d\n%s", code, errOut)
	}
	code, two, errOut := runKiln(t, append(args, "-tp", "2")...)
	if code != 0 || two != one {
		t.Errorf("-tp 2: exit %d, text %q; -tp 1 printed %q\n%s", code, two, one, errOut)
	}
	if !strings.Contains(errOut, "2 devices, tensor parallel (cpu, cpu)") {
		t.Errorf("-tp 2: the statistics do not name the group:\n%s", errOut)
	}
}
