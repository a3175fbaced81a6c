package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"regexp"
	"runtime/debug"
	"time"

	"github.com/kiln-gpu/kiln/bench"
	"github.com/kiln-gpu/kiln/runtime/backend"
)

// benchReport is what `kiln bench -json` prints (the format
// scripts/peers/join.py reads).
type benchReport struct {
	Tool    string         `json:"tool"`
	Device  string         `json:"device"`
	Backend string         `json:"backend"`
	Commit  string         `json:"commit"`
	Date    string         `json:"date"`
	Results []bench.Result `json:"results"`
}

func runBench(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("bench", stderr, "[-list] [-filter RE] [-device D] [-json] [-time DUR]")
	list := fs.Bool("list", false, "list the benchmark cases and exit")
	filter := fs.String("filter", "", "run only cases whose name matches this regular expression")
	device := fs.String("device", "auto", "device: auto, cpu, cuda or cuda:N")
	asJSON := fs.Bool("json", false, "print results as JSON on stdout")
	minTime := fs.Duration("time", time.Second, "least timed duration per case")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	var re *regexp.Regexp
	if *filter != "" {
		var err error
		if re, err = regexp.Compile(*filter); err != nil {
			return fmt.Errorf("%w: -filter: %v", errUsage, err)
		}
	}
	cases := bench.Cases(re)
	if *list {
		for _, c := range cases {
			fmt.Fprintln(stdout, c.Name)
		}
		return nil
	}
	if len(cases) == 0 {
		return fmt.Errorf("%w: no case matches -filter %q (see kiln bench -list)", errUsage, *filter)
	}
	dev, err := backend.Open(ctx, *device, backend.Options{})
	if err != nil {
		return err
	}
	defer dev.Close()
	fmt.Fprintf(stderr, "device: %s (%s)\n", dev.Description(), dev.Reason())
	results, err := bench.Run(ctx, dev, cases, bench.Options{
		MinTime:  *minTime,
		Progress: func(msg string) { fmt.Fprintln(stderr, msg) },
	})
	if err != nil {
		return err
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(benchReport{
			Tool: "kiln", Device: dev.Description(), Backend: dev.Name(),
			Commit: buildCommit(), Date: time.Now().UTC().Format(time.RFC3339), Results: results,
		})
	}
	for _, r := range results {
		if r.Error != "" {
			fmt.Fprintf(stdout, "%-40s error: %s\n", r.Name, r.Error)
			continue
		}
		fmt.Fprintf(stdout, "%-40s %s\n", r.Name, bench.FormatResult(r))
	}
	return nil
}

// buildCommit is the VCS revision the binary was built from ("-dirty" when
// the tree had changes), or "unknown".
func buildCommit() string {
	info, ok := debug.ReadBuildInfo()
	if !ok {
		return "unknown"
	}
	rev, dirty := "unknown", false
	for _, s := range info.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.modified":
			dirty = s.Value == "true"
		}
	}
	if dirty {
		rev += "-dirty"
	}
	return rev
}
