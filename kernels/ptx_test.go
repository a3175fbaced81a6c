package kernels

import (
	"bufio"
	"bytes"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// ptxEntry is one kernel of a PTX file.
type ptxEntry struct {
	name   string
	maxTID int // .maxntid x (0 when the kernel has no __launch_bounds__)
}

var (
	entryRE   = regexp.MustCompile(`^\.visible \.entry (\w+)\(`)
	maxntidRE = regexp.MustCompile(`^\s*\.maxntid (\d+), 1, 1`)
	// .file and .loc carry source paths and lines (-lineinfo, -G).
	debugDirectiveRE = regexp.MustCompile(`(?m)^\s*\.(file|loc)\s.*$`)
)

// parsePTX reads a PTX file's .version, .target and entries with their
// .maxntid (which follows the parameter list).
func parsePTX(t *testing.T, text []byte) (version, target string, entries map[string]ptxEntry) {
	t.Helper()
	entries = map[string]ptxEntry{}
	var current string
	sc := bufio.NewScanner(bytes.NewReader(text))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		switch {
		case strings.HasPrefix(line, ".version "):
			version = strings.TrimPrefix(line, ".version ")
		case strings.HasPrefix(line, ".target "):
			target = strings.TrimPrefix(line, ".target ")
		}
		if m := entryRE.FindStringSubmatch(line); m != nil {
			current = m[1]
			entries[current] = ptxEntry{name: current}
		}
		if m := maxntidRE.FindStringSubmatch(line); m != nil && current != "" {
			n, _ := strconv.Atoi(m[1])
			e := entries[current]
			e.maxTID = n
			entries[current] = e
		}
		if line == "{" {
			current = ""
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return version, target, entries
}

// embeddedEntries parses the embedded PTX of family f for target tg; ok is
// false when the file does not exist.
func embeddedEntries(t *testing.T, tg Target, f Family) (map[string]ptxEntry, bool) {
	t.Helper()
	text, err := fs.ReadFile(EmbeddedPTX(), ptxPath(tg, f))
	if err != nil {
		return nil, false
	}
	version, target, entries := parsePTX(t, text)
	if version != PTXISAVersion {
		t.Errorf("%s: .version %q, want %q (PTXISAVersion; MinDriverVersion must follow it)", ptxPath(tg, f), version, PTXISAVersion)
	}
	wantTarget := map[Target]string{TargetCompute80: "sm_80", TargetSM90a: "sm_90a"}[tg]
	if target != wantTarget {
		t.Errorf("%s: .target %q, want %q", ptxPath(tg, f), target, wantTarget)
	}
	return entries, true
}

// TestKernelsExistInPTX: every kernel a launcher can launch is an .entry of
// its family's PTX for every target the family has, and every .entry is
// known to the launchers (no stale kernels).
func TestKernelsExistInPTX(t *testing.T) {
	byFamily := map[Family][]string{}
	for _, k := range kernelTable {
		byFamily[k.family] = append(byFamily[k.family], k.name)
	}
	for _, f := range Families() {
		if len(byFamily[f]) == 0 {
			t.Errorf("family %q has no registered kernel", f)
		}
		for _, tg := range []Target{TargetCompute80, TargetSM90a} {
			entries, ok := embeddedEntries(t, tg, f)
			if !ok {
				if tg == TargetCompute80 {
					t.Errorf("family %q has no embedded %s", f, ptxPath(tg, f))
				}
				continue
			}
			if tg == TargetCompute80 && sm90aOnlyFamilies[f] {
				// Hopper-only kernels: the baseline module must hold none.
				for name := range entries {
					t.Errorf("%s has .entry %s, but family %q is sm_90a-only", ptxPath(tg, f), name, f)
				}
				continue
			}
			for _, name := range byFamily[f] {
				if _, ok := entries[name]; !ok {
					t.Errorf("kernel %s is not an .entry of %s", name, ptxPath(tg, f))
				}
			}
			for name := range entries {
				if !slices.Contains(byFamily[f], name) {
					t.Errorf("%s has .entry %s, which no launcher uses", ptxPath(tg, f), name)
				}
			}
		}
	}
}

// TestSourcesMatchPTX: the .cu files, the families and the embedded PTX
// correspond one to one, and sm_90a PTX exists exactly for the files that
// carry the marker.
func TestSourcesMatchPTX(t *testing.T) {
	sources, err := filepath.Glob("*.cu")
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, src := range sources {
		name := strings.TrimSuffix(src, ".cu")
		names = append(names, name)
		text, err := os.ReadFile(src)
		if err != nil {
			t.Fatal(err)
		}
		hasMarker := regexp.MustCompile(`(?m)^// kiln:targets sm_90a$`).Match(text)
		_, err = fs.Stat(EmbeddedPTX(), ptxPath(TargetSM90a, Family(name)))
		if hasMarker != (err == nil) {
			t.Errorf("%s: sm_90a marker %v, but embedded sm_90a PTX present %v (run make ptx)", src, hasMarker, err == nil)
		}
	}
	var families []string
	for _, f := range Families() {
		families = append(families, string(f))
	}
	slices.Sort(names)
	slices.Sort(families)
	if !slices.Equal(names, families) {
		t.Errorf("kernels/*.cu are %v, Families() are %v", names, families)
	}
	for _, tg := range []Target{TargetCompute80, TargetSM90a} {
		files, err := fs.Glob(EmbeddedPTX(), string(tg)+"/*.ptx")
		if err != nil {
			t.Fatal(err)
		}
		for _, file := range files {
			name := strings.TrimSuffix(filepath.Base(file), ".ptx")
			if !slices.Contains(names, name) {
				t.Errorf("embedded %s has no %s.cu", file, name)
			}
		}
	}
	// At least one family exercises the Hopper path.
	if files, _ := fs.Glob(EmbeddedPTX(), "sm_90a/*.ptx"); len(files) == 0 {
		t.Error("no family has sm_90a PTX: the Hopper load path is not exercised")
	}
}

// TestPTXHasNoPaths: the PTX must not depend on where the checkout lives.
func TestPTXHasNoPaths(t *testing.T) {
	err := fs.WalkDir(EmbeddedPTX(), ".", func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		text, err := fs.ReadFile(EmbeddedPTX(), path)
		if err != nil {
			return err
		}
		if m := debugDirectiveRE.Find(text); m != nil {
			t.Errorf("%s contains the debug directive %q (built with -lineinfo or -G?)", path, m)
		}
		for _, bad := range []string{"/home/", "/tmp/", "/work/", "/root/"} {
			if bytes.Contains(text, []byte(bad)) {
				t.Errorf("%s contains the path fragment %q", path, bad)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestBlockSizesWithinLaunchBounds: the largest block each launcher uses
// fits the kernel's __launch_bounds__ (.maxntid in the PTX); a larger block
// would fail to launch.
func TestBlockSizesWithinLaunchBounds(t *testing.T) {
	largest := map[Family]map[Kind]int{
		FamilyCopy:             {KindSimple: elementwiseThreads, KindVec: elementwiseThreads},
		FamilyBinary:           {KindSimple: elementwiseThreads, KindVec: elementwiseThreads},
		FamilyUnary:            {KindSimple: elementwiseThreads, KindVec: elementwiseThreads},
		FamilySoftmax:          {KindSimple: maxRowThreads, KindWarp: warpRowThreads},
		FamilyNorm:             {KindSimple: maxRowThreads, KindWarp: warpRowThreads},
		FamilyArgmax:           {KindSimple: maxRowThreads},
		FamilyRoPE:             {KindSimple: ropeThreads},
		FamilyEmbedding:        {KindSimple: embeddingThreads},
		FamilyProbe:            {KindProbe: probeThreads},
		FamilyMatMul:           {KindSimple: matmulSimpleThreads, KindSplitK: matmulSimpleThreads},
		FamilyMatMulSIMT:       {KindSIMT: simtThreads},
		FamilyMatMulDecode:     {KindDecode: decodeThreads},
		FamilyMatMulMMA:        {KindMMA: mmaThreads},
		FamilyMatMulWGMMA:      {KindWGMMA: wgmmaThreads},
		FamilyAttention:        {KindSimple: attentionSimpleThreads, KindCombine: attentionCombineThreads},
		FamilyAttentionPrefill: {KindPrefill: attentionPrefillThreads},
		FamilyAttentionDecode:  {KindDecode: 0}, // per tile, below
		FamilyAttentionWGMMA:   {KindWGMMA: attentionWGMMAThreads},
		FamilyAppendKV:         {KindSimple: appendKVThreads},
	}
	// The decode kernels' blocks are 32·Warps threads, per tile.
	byKernel := map[string]int{}
	for _, dt := range tensorCoreTypes {
		for _, tile := range decodeTiles {
			byKernel[kernelTable[attentionFastKernels[attentionKey{KindDecode, dt, tile.Dim}]].name] = 32 * tile.Warps
		}
	}
	// The heuristics never exceed those maxima.
	if c := rowsConfig(KindSimple, 1, 1<<40); int(c.block.X) > maxRowThreads {
		t.Errorf("rowsConfig block %d > %d", c.block.X, maxRowThreads)
	}
	if c := ropeConfig(1, 1<<20, 1<<20); int(c.block.X) > ropeThreads {
		t.Errorf("ropeConfig block %d > %d", c.block.X, ropeThreads)
	}
	if c := embeddingConfig(1, 1<<40); int(c.block.X) > embeddingThreads {
		t.Errorf("embeddingConfig block %d > %d", c.block.X, embeddingThreads)
	}
	if c := appendKVConfig(1, 1<<40); int(c.block.X) > appendKVThreads {
		t.Errorf("appendKVConfig block %d > %d", c.block.X, appendKVThreads)
	}
	for _, tg := range []Target{TargetCompute80, TargetSM90a} {
		for _, f := range Families() {
			entries, ok := embeddedEntries(t, tg, f)
			if !ok || (tg == TargetCompute80 && sm90aOnlyFamilies[f]) {
				continue
			}
			for _, k := range kernelTable {
				if k.family != f {
					continue
				}
				e := entries[k.name]
				want := largest[f][k.kind]
				if n, ok := byKernel[k.name]; ok {
					want = n
				}
				if want == 0 {
					t.Errorf("%s: no block size known for variant %s", k.name, k.kind)
					continue
				}
				if e.maxTID == 0 {
					t.Errorf("%s (%s): no .maxntid; give the kernel __launch_bounds__", k.name, tg)
				} else if want > e.maxTID {
					t.Errorf("%s (%s): launched with up to %d threads, but .maxntid is %d", k.name, tg, want, e.maxTID)
				}
			}
		}
	}
}

// TestRoPEChunkMatchesSource: ropeConfig sizes blocks by kRoPEChunk in rope.cu.
func TestRoPEChunkMatchesSource(t *testing.T) {
	text, err := os.ReadFile("rope.cu")
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`constexpr int kRoPEChunk = (\d+);`).FindSubmatch(text)
	if m == nil {
		t.Fatal("rope.cu: kRoPEChunk not found")
	}
	if got, _ := strconv.Atoi(string(m[1])); got != ropeChunk {
		t.Errorf("kRoPEChunk is %d in rope.cu, ropeChunk is %d in Go", got, ropeChunk)
	}
}
