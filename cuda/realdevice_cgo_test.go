//go:build cgo

package cuda

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"os"
	"testing"
)

// addOnePTX is add_one_f32(float *x, unsigned n): x[i] += 1 for i < n,
// written by hand (checked with ptxas 12.4 for sm_80 and sm_90).
const addOnePTX = `//
// add_one_f32(float *x, unsigned int n): x[i] += 1 for i < n.
//
.version 7.0
.target sm_70
.address_size 64

.visible .entry add_one_f32(
	.param .u64 add_one_f32_param_0,
	.param .u32 add_one_f32_param_1
)
{
	.reg .pred 	%p<2>;
	.reg .b32 	%r<5>;
	.reg .f32 	%f<3>;
	.reg .b64 	%rd<5>;

	ld.param.u64 	%rd1, [add_one_f32_param_0];
	ld.param.u32 	%r1, [add_one_f32_param_1];
	mov.u32 	%r2, %ctaid.x;
	mov.u32 	%r3, %ntid.x;
	mov.u32 	%r4, %tid.x;
	mad.lo.s32 	%r2, %r2, %r3, %r4;
	setp.ge.u32 	%p1, %r2, %r1;
	@%p1 bra 	$L__done;
	cvta.to.global.u64 	%rd2, %rd1;
	mul.wide.u32 	%rd3, %r2, 4;
	add.s64 	%rd4, %rd2, %rd3;
	ld.global.f32 	%f1, [%rd4];
	add.f32 	%f2, %f1, 0f3F800000;
	st.global.f32 	[%rd4], %f2;
$L__done:
	ret;
}
`

// TestRealDeviceSmoke runs a kernel on this machine's own driver and GPU
// (libcuda.so.1, or KILN_TEST_REAL_LIBCUDA) in a child process, and skips
// where there is none.
func TestRealDeviceSmoke(t *testing.T) {
	var r realReport
	var env []string
	if lib := os.Getenv("KILN_TEST_REAL_LIBCUDA"); lib != "" {
		env = append(env, "KILN_CUDA_LIBRARY="+lib)
	}
	runChildMode(t, "real", &r, env...)
	if r.Skip != "" {
		t.Skipf("skipping: no usable CUDA device: %s", r.Skip)
	}
	t.Logf("ran on %s", r.Device)
	for _, f := range r.Failures {
		t.Error(f)
	}
}

// realDeviceCheck is the child side of TestRealDeviceSmoke.
func realDeviceCheck() (r realReport) {
	if err := Init(); err != nil {
		if errors.Is(err, ErrLibraryNotFound) || errors.Is(err, ErrNoDevice) {
			r.Skip = err.Error()
			return r
		}
		r.Failures = append(r.Failures, "Init: "+err.Error())
		return r
	}
	fail := func(format string, args ...any) { r.Failures = append(r.Failures, fmt.Sprintf(format, args...)) }
	dev, err := GetDevice(0)
	if err != nil {
		fail("GetDevice(0): %v", err)
		return r
	}
	name, _ := dev.Name()
	major, minor, err := dev.ComputeCapability()
	if err != nil {
		fail("ComputeCapability: %v", err)
	}
	uuid, err := dev.UUID()
	if err != nil || len(uuid) != len("GPU-xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx") {
		fail("UUID: %q, %v", uuid, err)
	}
	bus, _ := dev.PCIBusID()
	r.Device = fmt.Sprintf("%s (sm_%d%d, %s, %s)", name, major, minor, uuid, bus)

	ctx, err := dev.RetainPrimaryContext()
	if err != nil {
		fail("RetainPrimaryContext: %v", err)
		return r
	}
	defer ctx.Release()
	stream, err := ctx.NewStream(true)
	if err != nil {
		fail("NewStream: %v", err)
		return r
	}
	defer stream.Destroy()

	const n = 1000
	host := make([]byte, 4*n)
	for i := range n {
		binary.LittleEndian.PutUint32(host[4*i:], math.Float32bits(float32(i)))
	}
	x, err := ctx.MemAlloc(4 * n)
	if err != nil {
		fail("MemAlloc: %v", err)
		return r
	}
	defer ctx.MemFree(x)
	if err := ctx.MemcpyHtoD(x, host); err != nil {
		fail("MemcpyHtoD: %v", err)
		return r
	}
	// The copy went through the legacy default stream, which the
	// non-blocking stream below does not wait for, and may still be landing.
	if err := ctx.Synchronize(); err != nil {
		fail("Synchronize after MemcpyHtoD: %v", err)
		return r
	}
	mod, err := ctx.LoadModule([]byte(addOnePTX))
	if err != nil {
		fail("LoadModule: %v", err)
		return r
	}
	defer mod.Unload()
	f, err := mod.Function("add_one_f32")
	if err != nil {
		fail("Function: %v", err)
		return r
	}
	// The driver lays the parameters out as (u64 at 0, u32 at 8): 12 bytes.
	if version, err := DriverVersion(); err == nil && version >= 12040 {
		if size, known := f.ParamBytes(); !known || size != 12 {
			fail("ParamBytes of add_one_f32 on a CUDA %d driver: %d, %v; want 12, true (cuFuncGetParamInfo)", version, size, known)
		}
	}
	var args Args
	args.Ptr(x).U32(n)
	start, _ := ctx.NewEvent(true)
	end, _ := ctx.NewEvent(true)
	if err := start.Record(stream); err != nil {
		fail("Event.Record: %v", err)
	}
	if err := ctx.Launch(f, D1((n+255)/256), D1(256), 0, stream, &args); err != nil {
		fail("Launch: %v", err)
	}
	if err := end.Record(stream); err != nil {
		fail("Event.Record: %v", err)
	}
	// The same launch, captured into a graph and replayed twice.
	if err := stream.BeginCapture(CaptureRelaxed); err != nil {
		fail("BeginCapture: %v", err)
	} else {
		if err := ctx.Launch(f, D1((n+255)/256), D1(256), 0, stream, &args); err != nil {
			fail("Launch during capture: %v", err)
		}
		g, err := stream.EndCapture()
		if err != nil {
			fail("EndCapture: %v", err)
		} else {
			exec, err := g.Instantiate()
			if err != nil {
				fail("Instantiate: %v", err)
			} else {
				for range 2 {
					if err := exec.Launch(stream); err != nil {
						fail("GraphExec.Launch: %v", err)
					}
				}
				defer exec.Destroy()
			}
			defer g.Destroy()
		}
	}
	if err := stream.Synchronize(); err != nil {
		fail("Synchronize: %v", err)
		return r
	}
	if ms, err := ElapsedMillis(start, end); err != nil || ms < 0 {
		fail("ElapsedMillis: %v, %v", ms, err)
	}
	pinned, err := ctx.MemHostAlloc(4 * n)
	if err != nil {
		fail("MemHostAlloc: %v", err)
		return r
	}
	defer pinned.Free()
	if err := ctx.MemcpyDtoHAsync(pinned, 0, x, 4*n, stream); err != nil {
		fail("MemcpyDtoHAsync: %v", err)
	}
	if err := stream.Synchronize(); err != nil {
		fail("Synchronize: %v", err)
	}
	got := pinned.Bytes()
	for i := range n {
		if v := math.Float32frombits(binary.LittleEndian.Uint32(got[4*i:])); v != float32(i)+3 {
			fail("x[%d] = %v after one launch and two graph replays, want %v", i, v, float32(i)+3)
			break
		}
	}
	if _, err := ctx.LoadModule([]byte(".version 8.4\n.target sm_80\nthis is not PTX\n")); !errors.Is(err, ErrInvalidPTX) {
		fail("LoadModule(broken PTX): %v, want ErrInvalidPTX", err)
	} else if e := new(Error); !errors.As(err, &e) || e.Log == "" {
		fail("LoadModule(broken PTX): %v has no JIT log", err)
	}
	return r
}
