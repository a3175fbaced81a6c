// Package kernels holds kiln's CUDA kernels and everything needed to launch
// them: the CUDA C++ sources (*.cu, shared *.cuh, the plain-C parameter header
// kiln_params.h), the PTX generated from them with the pinned nvcc 12.4 and
// committed under ptx/ (embedded with go:embed), the loader that picks PTX by
// compute capability, and one Go launcher per kernel family.
//
// The package knows device pointers, sizes, dtypes and streams, not tensors:
// an Operand is a device address, a dtype and a shape with strides padded to
// four dimensions. Launchers check what they rely on and return errors
// matching op.ErrInvalidArgument; the full argument checks (runtime/op) run in
// the backend before.
//
// # Families, kernels and variants
//
// A family is one .cu file, compiled to one PTX module per target. Kernels are
// named <op>_<dtype>[_<variant>] and never renamed (see Kernels). Every op has
// a simple kernel, written to be obviously correct; a few have fast variants
// (KindVec, KindWarp) that dispatch picks where they apply unless
// Options.Variant is VariantSimple. VariantStatuses says which variants have
// been run on a GPU: at the time of writing none has, every kernel is only
// compiled and checked by ptxas (scripts/kernel-report.sh).
//
// # PTX targets
//
// Every family has compute_80 PTX (Ampere and newer, through the driver's
// JIT). A family whose .cu carries the line "// kiln:targets sm_90a" also has
// sm_90a PTX, used on compute capability 9.0 (H100, H200) and, if the driver
// refuses it, replaced by the compute_80 PTX with a warning in the log. The
// PTX is ISA 8.4 and needs a driver for CUDA 12.4 or newer (MinDriverVersion).
//
// # Device errors
//
// Kernels that can meet bad data at run time (an embedding id out of range)
// record it in a 32-byte device error word that the backend allocates, zeroes
// and reads back after synchronising; DecodeDeviceError turns it into an error.
package kernels
