package kernels

import (
	"reflect"
	"testing"

	"github.com/kiln-gpu/kiln/kernels/internal/ctypes"
)

// TestParamLayout compares the Go mirrors of kiln_params.h with the C
// compiler's offsetof and sizeof (through cgo), field by field.
func TestParamLayout(t *testing.T) {
	if !ctypes.Available {
		t.Skip("skipping: the C layout of kiln_params.h needs cgo (CGO_ENABLED=1 and a C compiler)")
	}
	mirrors := []struct {
		cName string
		goVal any
	}{
		{"KilnStrided", stridedParams{}},
		{"KilnElementwiseParams", elementwiseParams{}},
		{"KilnRowsParams", rowsParams{}},
		{"KilnRoPEParams", ropeParams{}},
		{"KilnEmbeddingParams", embeddingParams{}},
		{"KilnMatMulParams", matmulParams{}},
		{"KilnAttentionParams", attentionParams{}},
		{"KilnAppendKVParams", appendKVParams{}},
		{"KilnErrorWord", errorWordLayout{}},
	}
	covered := map[string]bool{}
	for _, m := range mirrors {
		typ := reflect.TypeOf(m.goVal)
		cSize, ok := ctypes.Sizes[m.cName]
		if !ok {
			t.Errorf("%s: no C size (add it to kernels/internal/ctypes)", m.cName)
			continue
		}
		if typ.Size() != cSize {
			t.Errorf("%s: sizeof is %d in C, %s is %d bytes in Go", m.cName, cSize, typ.Name(), typ.Size())
		}
		for i := range typ.NumField() {
			f := typ.Field(i)
			cField := f.Tag.Get("c")
			if cField == "" {
				t.Errorf("%s.%s has no c:\"...\" tag naming its C field", typ.Name(), f.Name)
				continue
			}
			key := m.cName + "." + cField
			covered[key] = true
			cOff, ok := ctypes.Offsets[key]
			if !ok {
				t.Errorf("%s: no C offset for %s (missing in kiln_params.h or in ctypes)", typ.Name(), key)
				continue
			}
			if f.Offset != cOff {
				t.Errorf("%s: offsetof is %d in C, %s.%s is at %d in Go", key, cOff, typ.Name(), f.Name, f.Offset)
			}
		}
	}
	for key := range ctypes.Offsets {
		if !covered[key] {
			t.Errorf("C field %s has no Go mirror field", key)
		}
	}
	if got := len(ctypes.Sizes); got != len(mirrors) {
		t.Errorf("ctypes reports %d C structs, the test knows %d", got, len(mirrors))
	}
}

// TestDefines checks the Go copies of kiln_params.h's #defines.
func TestDefines(t *testing.T) {
	if !ctypes.Available {
		t.Skip("skipping: the #defines of kiln_params.h are read through cgo")
	}
	want := map[string]int64{
		"KILN_ROPE_NORMAL":            ropeStyleNormal,
		"KILN_ROPE_NEOX":              ropeStyleNeoX,
		"KILN_ERR_NONE":               int64(ErrCodeNone),
		"KILN_ERR_INDEX_OUT_OF_RANGE": int64(ErrCodeIndexOutOfRange),
		"KILN_OP_EMBEDDING":           int64(ErrOpEmbedding),
		"KILN_OP_ATTENTION":           int64(ErrOpAttention),
		"KILN_OP_APPEND_KV":           int64(ErrOpAppendKV),

		"KILN_ERR_QUERY_START_RANGE":      int64(ErrCodeQueryStartRange),
		"KILN_ERR_QUERY_START_DECREASING": int64(ErrCodeQueryStartDecreasing),
		"KILN_ERR_KV_START_RANGE":         int64(ErrCodeKVStartRange),
		"KILN_ERR_KV_START_DECREASING":    int64(ErrCodeKVStartDecreasing),
		"KILN_ERR_KV_LEN_RANGE":           int64(ErrCodeKVLenRange),
		"KILN_ERR_QUERY_LEN_OVER_MAX":     int64(ErrCodeQueryLenOverMax),
		"KILN_ERR_KV_LEN_OVER_MAX":        int64(ErrCodeKVLenOverMax),
		"KILN_ERR_MASK_TOO_NARROW":        int64(ErrCodeMaskTooNarrow),
		"KILN_ERR_PAGE_OUT_OF_RANGE":      int64(ErrCodePageOutOfRange),
		"KILN_ERR_POSITION_OUT_OF_RANGE":  int64(ErrCodePositionOutOfRange),
		"KILN_ERR_QUERY_STARTS_END":       int64(ErrCodeQueryStartsEnd),
	}
	for name, w := range want {
		got, ok := ctypes.Defines[name]
		if !ok {
			t.Errorf("%s: not reported by ctypes", name)
		} else if got != w {
			t.Errorf("%s is %d in C, %d in Go", name, got, w)
		}
	}
	if reflect.TypeOf(errorWordLayout{}).Size() != ErrorWordBytes {
		t.Errorf("ErrorWordBytes %d differs from the error word struct's %d bytes", ErrorWordBytes, reflect.TypeOf(errorWordLayout{}).Size())
	}
}
