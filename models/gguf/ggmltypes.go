package gguf

import "fmt"

// ggmlTypeInfo is the storage layout of one ggml_type: blockElems elements in
// blockBytes bytes, blocks running along the innermost dimension.
type ggmlTypeInfo struct {
	name       string
	blockElems int64
	blockBytes int64
}

// ggmlTypes lists every ggml_type value GGUF files use, with its block
// layout (ggml's type traits: blck_size and type_size), including the types
// kiln cannot compute with, so that a file holding them still opens, its
// tensors are bounds-checked, and tools can list them. Values 4, 5, 31-33 and
// 36-38 were types ggml has removed.
var ggmlTypes = map[uint32]ggmlTypeInfo{
	0:  {"F32", 1, 4},
	1:  {"F16", 1, 2},
	2:  {"Q4_0", 32, 18},
	3:  {"Q4_1", 32, 20},
	6:  {"Q5_0", 32, 22},
	7:  {"Q5_1", 32, 24},
	8:  {"Q8_0", 32, 34},
	9:  {"Q8_1", 32, 36}, // ggml's sizeof(block_q8_1): two f16 and 32 int8 (gguf-py 0.19 says 40; ggml writes 36)
	10: {"Q2_K", 256, 84},
	11: {"Q3_K", 256, 110},
	12: {"Q4_K", 256, 144},
	13: {"Q5_K", 256, 176},
	14: {"Q6_K", 256, 210},
	15: {"Q8_K", 256, 292},
	16: {"IQ2_XXS", 256, 66},
	17: {"IQ2_XS", 256, 74},
	18: {"IQ3_XXS", 256, 98},
	19: {"IQ1_S", 256, 50},
	20: {"IQ4_NL", 32, 18},
	21: {"IQ3_S", 256, 110},
	22: {"IQ2_S", 256, 82},
	23: {"IQ4_XS", 256, 136},
	24: {"I8", 1, 1},
	25: {"I16", 1, 2},
	26: {"I32", 1, 4},
	27: {"I64", 1, 8},
	28: {"F64", 1, 8},
	29: {"IQ1_M", 256, 56},
	30: {"BF16", 1, 2},
	34: {"TQ1_0", 256, 54},
	35: {"TQ2_0", 256, 66},
	39: {"MXFP4", 32, 17},
	40: {"NVFP4", 64, 36},
	41: {"Q1_0", 128, 18},
}

// GGMLTypeName is the name of a ggml_type value: "F32", "Q4_K", "IQ2_XXS",
// or "type N" for a value this package does not know.
func GGMLTypeName(t uint32) string {
	if info, ok := ggmlTypes[t]; ok {
		return info.name
	}
	return fmt.Sprintf("type %d", t)
}

// GGMLTypeLayout returns the block layout of a ggml_type: elements per block
// and bytes per block, and false for a value this package does not know.
func GGMLTypeLayout(t uint32) (blockElems, blockBytes int64, ok bool) {
	info, ok := ggmlTypes[t]
	return info.blockElems, info.blockBytes, ok
}
