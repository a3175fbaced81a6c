package kernels

import (
	"testing"
)

func TestParseSelection(t *testing.T) {
	for in, want := range map[string]Variant{"": VariantAuto, "auto": VariantAuto, "AUTO": VariantAuto, " simple ": VariantSimple, "Simple": VariantSimple} {
		got, err := ParseVariant(in)
		if err != nil || got != want {
			t.Errorf("ParseVariant(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, in := range []string{"fast", "simpler", "1"} {
		if _, err := ParseVariant(in); err == nil {
			t.Errorf("ParseVariant(%q) succeeded", in)
		}
	}
	if VariantSimple.String() != "simple" || VariantAuto.String() != "auto" {
		t.Error("Variant.String")
	}
}

// TestVariantTableCoversKernels: every variant a launcher can pick has a row
// in the status table, and every row describes kernels that exist.
func TestVariantTableCoversKernels(t *testing.T) {
	rows := map[familyVariant]VariantStatus{}
	for _, v := range VariantStatuses() {
		key := familyVariant{v.Family, v.Kind}
		if _, dup := rows[key]; dup {
			t.Errorf("duplicate row for %s/%s", v.Family, v.Kind)
		}
		rows[key] = v
		switch v.Status {
		case StatusCompiled, StatusPassed, StatusDisabled:
		default:
			t.Errorf("%s/%s: unknown status %q", v.Family, v.Kind, v.Status)
		}
		if v.Kernels == "" || v.When == "" {
			t.Errorf("%s/%s: empty description", v.Family, v.Kind)
		}
	}
	used := map[familyVariant]bool{}
	for _, k := range kernelTable {
		key := familyVariant{k.family, k.kind}
		used[key] = true
		if _, ok := rows[key]; !ok {
			t.Errorf("kernel %s: no status row for %s/%s", k.name, k.family, k.kind)
		}
	}
	for key := range rows {
		if !used[key] {
			t.Errorf("status row %s/%s has no kernels", key.family, key.kind)
		}
	}
	// Every family has its simple (or probe) kernels, or is a family of fast
	// variants whose op's simple kernels are in another family.
	for _, f := range Families() {
		if simple, ok := simpleKernelsOf[f]; ok {
			if !used[familyVariant{simple, KindSimple}] {
				t.Errorf("family %s names %s as its simple kernels' family, which has none", f, simple)
			}
			continue
		}
		if !used[familyVariant{f, KindSimple}] && !used[familyVariant{f, KindProbe}] {
			t.Errorf("family %s has no simple kernel", f)
		}
	}
	// The returned table is a copy.
	VariantStatuses()[0].Status = StatusDisabled
	if variantStatuses[0].Status == StatusDisabled {
		t.Error("VariantStatuses exposes the package's table")
	}
}

func TestKernelsList(t *testing.T) {
	ks := Kernels()
	if len(ks) != len(kernelTable) {
		t.Fatalf("Kernels() has %d entries, the table %d", len(ks), len(kernelTable))
	}
	seen := map[string]bool{}
	for _, k := range ks {
		if seen[k.Name] {
			t.Errorf("kernel %s listed twice", k.Name)
		}
		seen[k.Name] = true
	}
	for _, name := range []string{"copy_bf16_to_f16", "copy_i32_to_i32_vec", "add_bf16_vec", "gelu_tanh_f32", "softmax_f16_warp",
		"layernorm_bf16", "rope_f32", "embedding_q6_k_to_bf16", "embedding_q4_0_to_f32", "argmax_f16", "read_probe_b128",
		"matmul_q4_k_f16", "matmul_reduce_bf16", "matmul_q6_k_f32_simt_m8", "matmul_q8_0_bf16_decode", "matmul_f16_f16_mma", "matmul_q4_k_bf16_wgmma",
		"attention_bf16_wgmma_d128"} {
		if !seen[name] {
			t.Errorf("kernel %s is missing", name)
		}
	}
	// 10 copy pairs × 2, 2 ops × 3 × 2, 3 ops × 3 × 2, softmax 3 × 2, norms 2 × 3 × 2, rope 3,
	// embedding 7 × 3, argmax 3, probes 2; matmul: simple 7 × 3, reduce 3,
	// simt 7 × 4, decode 7 × 2, mma 7 × 2, wgmma 7 × 2; attention: simple 3, combine 2,
	// prefill 7 × 2, decode 7 × 2, wgmma 3 × 2; append_kv 3.
	if want := 20 + 12 + 18 + 6 + 12 + 3 + 21 + 3 + 2 + 21 + 3 + 28 + 14 + 14 + 14 + 3 + 2 + 14 + 14 + 6 + 3; len(ks) != want {
		t.Errorf("%d kernels, want %d", len(ks), want)
	}
}
