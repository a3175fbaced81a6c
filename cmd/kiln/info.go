package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strings"

	"github.com/kiln-gpu/kiln/cuda"
	"github.com/kiln-gpu/kiln/kernels"
	"github.com/kiln-gpu/kiln/runtime/backend"
	"github.com/kiln-gpu/kiln/runtime/telemetry"
)

// infoReport is what `kiln info -json` prints.
type infoReport struct {
	DriverLibrary      string       `json:"driver_library,omitempty"`
	DriverError        string       `json:"driver_error,omitempty"`
	CUDADriverVersion  string       `json:"cuda_driver_version,omitempty"` // newest CUDA the driver supports
	RequiredCUDA       string       `json:"required_cuda"`
	Devices            []deviceInfo `json:"devices"`
	AutoBackend        string       `json:"auto_backend"`
	AutoReason         string       `json:"auto_reason"`
	TelemetryAvailable bool         `json:"telemetry_available"`
	TelemetryError     string       `json:"telemetry_error,omitempty"`
}

type deviceInfo struct {
	Ordinal           int      `json:"ordinal"`
	Name              string   `json:"name"`
	UUID              string   `json:"uuid,omitempty"`
	PCIBusID          string   `json:"pci_bus_id,omitempty"`
	ComputeCapability string   `json:"compute_capability"`
	Multiprocessors   int      `json:"multiprocessors,omitempty"`
	TotalMemoryBytes  int64    `json:"total_memory_bytes"`
	UsedMemoryBytes   *int64   `json:"used_memory_bytes,omitempty"`
	FreeMemoryBytes   *int64   `json:"free_memory_bytes,omitempty"`
	GPUUtilPercent    *int     `json:"gpu_utilization_percent,omitempty"`
	TemperatureC      *int     `json:"temperature_c,omitempty"`
	PowerW            *float64 `json:"power_w,omitempty"`
	Errors            []string `json:"errors,omitempty"`
}

func runInfo(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("info", stderr, "[-json]")
	asJSON := fs.Bool("json", false, "print JSON instead of text")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	r := gatherInfo(ctx)
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(r)
	}
	printInfo(stdout, r)
	return nil
}

func gatherInfo(ctx context.Context) infoReport {
	r := infoReport{RequiredCUDA: versionString(kernels.MinDriverVersion)}
	err := cuda.Load()
	r.DriverLibrary = cuda.LibraryPath()
	if err == nil {
		if v, verr := cuda.DriverVersion(); verr == nil {
			r.CUDADriverVersion = versionString(v)
		}
		err = cuda.Init()
	}
	if err != nil {
		r.DriverError = err.Error()
	} else if n, cerr := cuda.DeviceCount(); cerr != nil {
		r.DriverError = cerr.Error()
	} else {
		for i := 0; i < n; i++ {
			r.Devices = append(r.Devices, describeDevice(i))
		}
	}
	if mon, merr := telemetry.Open(); merr != nil {
		r.TelemetryError = merr.Error()
	} else {
		r.TelemetryAvailable = true
		for i := range r.Devices {
			addTelemetry(mon, &r.Devices[i])
		}
		_ = mon.Close()
	}
	dev, oerr := backend.Open(ctx, "auto", backend.Options{})
	if oerr != nil {
		r.AutoBackend = "none"
		r.AutoReason = oerr.Error()
	} else {
		r.AutoBackend = dev.Name()
		r.AutoReason = dev.Reason()
		_ = dev.Close()
	}
	return r
}

func describeDevice(ordinal int) deviceInfo {
	d := deviceInfo{Ordinal: ordinal}
	note := func(err error) {
		if err != nil {
			d.Errors = append(d.Errors, err.Error())
		}
	}
	dev, err := cuda.GetDevice(ordinal)
	if err != nil {
		note(err)
		return d
	}
	d.Name, err = dev.Name()
	note(err)
	d.UUID, err = dev.UUID()
	note(err)
	d.PCIBusID, err = dev.PCIBusID()
	note(err)
	major, minor, err := dev.ComputeCapability()
	note(err)
	d.ComputeCapability = fmt.Sprintf("%d.%d", major, minor)
	d.Multiprocessors, err = dev.Attribute(cuda.AttrMultiprocessorCount)
	note(err)
	d.TotalMemoryBytes, err = dev.TotalMemBytes()
	note(err)
	return d
}

func addTelemetry(mon *telemetry.Monitor, d *deviceInfo) {
	var s telemetry.Sample
	var err error
	if d.UUID != "" {
		s, err = mon.SampleUUID(d.UUID)
	} else {
		s, err = mon.Sample(d.Ordinal)
	}
	if err != nil {
		d.Errors = append(d.Errors, "telemetry: "+err.Error())
		return
	}
	if s.MemoryUsedBytes.OK() {
		v := s.MemoryUsedBytes.Value
		d.UsedMemoryBytes = &v
	}
	if s.MemoryFreeBytes.OK() {
		v := s.MemoryFreeBytes.Value
		d.FreeMemoryBytes = &v
	}
	if s.GPUUtilPercent.OK() {
		v := s.GPUUtilPercent.Value
		d.GPUUtilPercent = &v
	}
	if s.TemperatureC.OK() {
		v := s.TemperatureC.Value
		d.TemperatureC = &v
	}
	if s.PowerW.OK() {
		v := s.PowerW.Value
		d.PowerW = &v
	}
}

func printInfo(w io.Writer, r infoReport) {
	lib := r.DriverLibrary
	if lib == "" {
		lib = "(none)"
	}
	fmt.Fprintf(w, "CUDA driver library: %s\n", lib)
	if r.DriverError != "" {
		fmt.Fprintf(w, "CUDA driver: unavailable: %s\n", r.DriverError)
	}
	if r.CUDADriverVersion != "" {
		fmt.Fprintf(w, "CUDA version supported by the driver: %s (kiln's PTX needs %s or newer)\n", r.CUDADriverVersion, r.RequiredCUDA)
	}
	if len(r.Devices) == 0 {
		fmt.Fprintln(w, "CUDA devices: none")
	}
	for _, d := range r.Devices {
		fmt.Fprintf(w, "cuda:%d  %s\n", d.Ordinal, d.Name)
		fmt.Fprintf(w, "        compute capability %s, %d SMs, %.1f GiB\n", d.ComputeCapability, d.Multiprocessors, float64(d.TotalMemoryBytes)/(1<<30))
		fmt.Fprintf(w, "        UUID %s, PCI %s\n", d.UUID, d.PCIBusID)
		if d.UsedMemoryBytes != nil && d.FreeMemoryBytes != nil {
			fmt.Fprintf(w, "        memory used %.1f GiB, free %.1f GiB\n", float64(*d.UsedMemoryBytes)/(1<<30), float64(*d.FreeMemoryBytes)/(1<<30))
		}
		var parts []string
		if d.GPUUtilPercent != nil {
			parts = append(parts, fmt.Sprintf("utilisation %d%%", *d.GPUUtilPercent))
		}
		if d.TemperatureC != nil {
			parts = append(parts, fmt.Sprintf("%d °C", *d.TemperatureC))
		}
		if d.PowerW != nil {
			parts = append(parts, fmt.Sprintf("%.0f W", *d.PowerW))
		}
		if len(parts) > 0 {
			fmt.Fprintf(w, "        %s\n", strings.Join(parts, ", "))
		}
		for _, e := range d.Errors {
			fmt.Fprintf(w, "        error: %s\n", e)
		}
	}
	if !r.TelemetryAvailable {
		fmt.Fprintf(w, "Telemetry (NVML): unavailable: %s\n", r.TelemetryError)
	}
	fmt.Fprintf(w, "Backend for -device auto: %s\n", r.AutoBackend)
	fmt.Fprintf(w, "  why: %s\n", r.AutoReason)
}

func versionString(v int) string { return fmt.Sprintf("%d.%d", v/1000, v%1000/10) }
