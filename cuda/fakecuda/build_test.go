package fakecuda

import (
	"debug/elf"
	"strings"
	"testing"
)

func TestBuildCachesAndExportsTheDriverAndQueryEntryPoints(t *testing.T) {
	path := Build(t)
	if again := Build(t); again != path {
		t.Errorf("second Build: %q, want the cached %q", again, path)
	}
	f, err := elf.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	syms, err := f.DynamicSymbols()
	if err != nil {
		t.Fatal(err)
	}
	exported := map[string]bool{}
	for _, s := range syms {
		if s.Section != elf.SHN_UNDEF {
			exported[s.Name] = true
		}
	}
	for _, name := range []string{
		"cuInit", "cuDeviceGetUuid", "cuDeviceGetUuid_v2", "cuMemAlloc_v2", "cuLaunchKernel",
		"cuModuleLoadDataEx", "cuGraphInstantiateWithFlags", "fakecuda_launch_count", "fakecuda_last_launch",
	} {
		if !exported[name] {
			t.Errorf("%s does not export %s", path, name)
		}
	}

	variant := BuildVariant(t, "FAKECUDA_NO_UUID_V2")
	if variant == path {
		t.Fatal("a variant shares the default build's path")
	}
	vf, err := elf.Open(variant)
	if err != nil {
		t.Fatal(err)
	}
	defer vf.Close()
	vsyms, _ := vf.DynamicSymbols()
	for _, s := range vsyms {
		if s.Name == "cuDeviceGetUuid_v2" && s.Section != elf.SHN_UNDEF {
			t.Error("the FAKECUDA_NO_UUID_V2 variant still exports cuDeviceGetUuid_v2")
		}
	}
}

func TestBuildRejectsMacrosThatAreNotNames(t *testing.T) {
	for _, bad := range []string{"", "-O0", "A B", "X=1"} {
		if _, err := BuildPath(bad); err == nil || !strings.Contains(err.Error(), "invalid macro name") {
			t.Errorf("BuildPath(%q): %v, want an invalid-macro error", bad, err)
		}
	}
}
