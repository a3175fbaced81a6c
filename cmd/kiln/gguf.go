package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"text/tabwriter"
	"unicode/utf8"

	"github.com/kiln-gpu/kiln/models/gguf"
	"github.com/kiln-gpu/kiln/runtime/tensor"
)

// How much of long metadata values `kiln gguf` shows: strings are cut after
// maxShownStringRunes characters, arrays after maxShownArrayElems elements
// (a vocabulary holds tens of thousands).
const (
	maxShownStringRunes = 160
	maxShownArrayElems  = 8
)

// dequantMaxChunkElems bounds the memory of -dequant: the tensor is
// converted and written a whole number of rows at a time, about this many
// elements, so a 128256×4096 embedding does not need 2 GiB of float32.
const dequantMaxChunkElems = 1 << 20

// runGGUF is `kiln gguf FILE [-tensor NAME [-dequant -out FILE]]`: the file's
// header, metadata and tensor table; with -tensor, one tensor's description;
// with -dequant, that tensor converted to float32 and written raw
// (little-endian, row-major in the Shape order shown) to -out.
func runGGUF(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("gguf", stderr, "FILE [-tensor NAME [-dequant -out FILE]]")
	tensorName := fs.String("tensor", "", "show only the tensor with this `name`")
	dequant := fs.Bool("dequant", false, "convert the -tensor to float32 and write it to -out (raw little-endian, row-major, outermost dimension first)")
	outPath := fs.String("out", "", "the `file` -dequant writes")
	// The file may come before, between or after the flags: the flag
	// package stops at the first argument that is not a flag, so a
	// positional argument is taken off and parsing resumes after it.
	var path string
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		path, args = args[0], args[1:]
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return fmt.Errorf("%w: %v", errUsage, err)
	}
	if path == "" && fs.NArg() > 0 {
		path = fs.Arg(0)
		if err := parseFlags(fs, fs.Args()[1:]); err != nil {
			return err
		}
	} else if fs.NArg() > 0 {
		return fmt.Errorf("%w: unexpected arguments: %s", errUsage, strings.Join(fs.Args(), " "))
	}
	switch {
	case path == "":
		return fmt.Errorf("%w: no GGUF file given", errUsage)
	case *dequant && *tensorName == "":
		return fmt.Errorf("%w: -dequant needs -tensor NAME", errUsage)
	case *dequant && *outPath == "":
		return fmt.Errorf("%w: -dequant needs -out FILE (the float32 output is binary)", errUsage)
	case !*dequant && *outPath != "":
		return fmt.Errorf("%w: -out is only for -dequant", errUsage)
	}
	if err := ctx.Err(); err != nil {
		return err
	}

	f, err := gguf.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()

	w := bufio.NewWriter(stdout)
	if *tensorName != "" {
		info, ok := f.Tensor(*tensorName)
		if !ok {
			return fmt.Errorf("%s: no tensor named %q (the file has %d tensors; run 'kiln gguf %s' to list them)", path, *tensorName, len(f.Tensors), path)
		}
		writeTensorTable(w, []gguf.TensorInfo{info}, []int{tensorIndex(f, info.Name)})
		if *dequant {
			n, err := dequantizeTo(ctx, f, info, *outPath)
			if err != nil {
				return err
			}
			fmt.Fprintf(w, "wrote %d float32 values (%d bytes, shape %v) to %s\n", n, 4*n, info.Shape, *outPath)
		}
		return w.Flush()
	}

	var dataBytes int64
	for _, t := range f.Tensors {
		if t.SizeBytes > 0 {
			dataBytes += t.SizeBytes
		}
	}
	fmt.Fprintf(w, "%s: GGUF version %d, alignment %d, %d metadata keys, %d tensors, %d bytes of tensor data from offset %d\n",
		path, f.Version, f.Alignment, len(f.Metadata), len(f.Tensors), dataBytes, f.DataOffset)
	fmt.Fprintf(w, "\nmetadata:\n")
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	for _, kv := range f.Metadata {
		fmt.Fprintf(tw, "  %s\t%s\t%s\n", kv.Key, valueTypeName(kv.Value), formatValue(kv.Value))
	}
	tw.Flush()
	fmt.Fprintf(w, "\ntensors (shape outermost dimension first, the reverse of ggml's ne[]):\n")
	idx := make([]int, len(f.Tensors))
	for i := range idx {
		idx[i] = i
	}
	writeTensorTable(w, f.Tensors, idx)
	return w.Flush()
}

func tensorIndex(f *gguf.File, name string) int {
	for i, t := range f.Tensors {
		if t.Name == name {
			return i
		}
	}
	return -1
}

// writeTensorTable prints one line per tensor: index, name, ggml type,
// shape, element count, absolute offset and size.
func writeTensorTable(w io.Writer, ts []gguf.TensorInfo, index []int) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "  #\tname\ttype\tshape\telements\toffset\tbytes\n")
	for i, t := range ts {
		fmt.Fprintf(tw, "  %d\t%s\t%s\t%s\t%d\t%d\t%d\n", index[i], t.Name, t.TypeName(), formatShape(t.Shape), t.NumElements(), t.Offset, t.SizeBytes)
	}
	tw.Flush()
}

func formatShape(shape []int) string {
	parts := make([]string, len(shape))
	for i, d := range shape {
		parts[i] = strconv.Itoa(d)
	}
	return "[" + strings.Join(parts, " ") + "]"
}

// valueTypeName is "string", "uint32", or "[float32 × 512]" for an array.
func valueTypeName(v gguf.Value) string {
	if v.Type == gguf.TypeArray && v.Array != nil {
		return fmt.Sprintf("[%v × %d]", v.Array.ElemType, v.Array.Len)
	}
	return v.Type.String()
}

// formatValue shows a metadata value on one line: strings quoted (and cut
// when long), arrays by their first elements.
func formatValue(v gguf.Value) string {
	switch {
	case v.Type == gguf.TypeString:
		return quoteCut(v.Str)
	case v.Type == gguf.TypeBool:
		return strconv.FormatBool(v.Bool)
	case v.Type.IsUnsigned():
		return strconv.FormatUint(v.U64, 10)
	case v.Type.IsSigned():
		return strconv.FormatInt(v.I64, 10)
	case v.Type.IsFloat():
		return strconv.FormatFloat(v.F64, 'g', -1, 64)
	case v.Type == gguf.TypeArray && v.Array != nil:
		return formatArray(v.Array)
	}
	return "?"
}

func quoteCut(s string) string {
	if utf8.RuneCountInString(s) <= maxShownStringRunes {
		return strconv.Quote(s)
	}
	cut := s
	for i := range s {
		if utf8.RuneCountInString(s[:i]) == maxShownStringRunes {
			cut = s[:i]
			break
		}
	}
	return fmt.Sprintf("%s… (%d bytes)", strconv.Quote(cut), len(s))
}

func formatArray(a *gguf.Array) string {
	n := min(a.Len, maxShownArrayElems)
	elems := make([]string, 0, n+1)
	for i := 0; i < n; i++ {
		var s string
		switch a.ElemType {
		case gguf.TypeUint8:
			s = strconv.FormatUint(uint64(a.U8[i]), 10)
		case gguf.TypeInt8:
			s = strconv.FormatInt(int64(a.I8[i]), 10)
		case gguf.TypeUint16:
			s = strconv.FormatUint(uint64(a.U16[i]), 10)
		case gguf.TypeInt16:
			s = strconv.FormatInt(int64(a.I16[i]), 10)
		case gguf.TypeUint32:
			s = strconv.FormatUint(uint64(a.U32[i]), 10)
		case gguf.TypeInt32:
			s = strconv.FormatInt(int64(a.I32[i]), 10)
		case gguf.TypeUint64:
			s = strconv.FormatUint(a.U64[i], 10)
		case gguf.TypeInt64:
			s = strconv.FormatInt(a.I64[i], 10)
		case gguf.TypeFloat32:
			s = strconv.FormatFloat(float64(a.F32[i]), 'g', -1, 32)
		case gguf.TypeFloat64:
			s = strconv.FormatFloat(a.F64[i], 'g', -1, 64)
		case gguf.TypeBool:
			s = strconv.FormatBool(a.Bool[i])
		case gguf.TypeString:
			s = quoteCut(a.Str[i])
		case gguf.TypeArray:
			if a.Arrays[i] != nil {
				s = fmt.Sprintf("[%v × %d]", a.Arrays[i].ElemType, a.Arrays[i].Len)
			}
		}
		elems = append(elems, s)
	}
	if a.Len > n {
		elems = append(elems, fmt.Sprintf("… (%d more)", a.Len-n))
	}
	return "[" + strings.Join(elems, ", ") + "]"
}

// dequantizeTo writes tensor info of f to path as raw little-endian float32,
// converting a bounded number of rows at a time. It returns the number of
// values written. A partly written file is removed on error.
func dequantizeTo(ctx context.Context, f *gguf.File, info gguf.TensorInfo, path string) (n int64, err error) {
	if !info.DType.Valid() {
		return 0, fmt.Errorf("tensor %s has ggml type %s, which kiln cannot dequantize (it reads %s)",
			info.Name, info.TypeName(), strings.Join(tensor.DTypeNames(), ", "))
	}
	data, err := f.TensorData(info)
	if err != nil {
		return 0, err
	}
	rowElems := 1
	if len(info.Shape) > 0 {
		rowElems = info.Shape[len(info.Shape)-1]
	}
	total := info.NumElements()
	rowBytes, err := info.DType.RowBytes(rowElems)
	if err != nil {
		return 0, fmt.Errorf("tensor %s: %w", info.Name, err)
	}
	if rowElems == 0 || total == 0 {
		rowElems, rowBytes = 0, 0
	}

	out, err := os.Create(path)
	if err != nil {
		return 0, err
	}
	defer func() {
		if cerr := out.Close(); err == nil && cerr != nil {
			err = cerr
		}
		if err != nil {
			os.Remove(path)
		}
	}()
	bw := bufio.NewWriterSize(out, 1<<20)
	if rowElems > 0 {
		rowsPerChunk := max(1, dequantMaxChunkElems/rowElems)
		rows := int(total / int64(rowElems))
		buf := make([]float32, rowsPerChunk*rowElems)
		for r := 0; r < rows; r += rowsPerChunk {
			if err := ctx.Err(); err != nil {
				return 0, err
			}
			nRows := min(rowsPerChunk, rows-r)
			dst := buf[:nRows*rowElems]
			src := data[int64(r)*rowBytes : int64(r+nRows)*rowBytes]
			if err := tensor.Dequantize(info.DType, src, dst); err != nil {
				return 0, fmt.Errorf("tensor %s rows %d-%d: %w", info.Name, r, r+nRows-1, err)
			}
			if _, err := bw.Write(tensor.F32Bytes(dst)); err != nil {
				return 0, fmt.Errorf("writing %s: %w", path, err)
			}
		}
	}
	if err := bw.Flush(); err != nil {
		return 0, fmt.Errorf("writing %s: %w", path, err)
	}
	return total, nil
}
