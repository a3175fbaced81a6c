// Command kiln is kiln's command-line tool: text generation with LLaMA-family
// GGUF models (a small built-in model needs no download), model inspection,
// tokenisation, device information and benchmarks.
//
//	kiln generate [-model FILE] [-prompt TEXT] [-n N] [-temp T] [-top-k K] [-top-p P] [-seed S] [-device auto|cpu|cuda:N] [-tp N]
//	kiln eval -model FILE (-tokens "ID ID ..." | -text TEXT) [-logits-out FILE]
//	kiln gguf FILE [-tensor NAME [-dequant -out FILE]]
//	kiln tokenize -model FILE [-text TEXT | stdin] [-add-bos]
//	kiln info [-json]
//	kiln bench [-list] [-filter RE] [-device D] [-json] [-time DUR]
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"sort"
	"strings"
)

// command is one subcommand.
type command struct {
	name    string
	summary string
	run     func(ctx context.Context, args []string, stdout, stderr io.Writer) error
}

func commands() []command {
	return []command{
		{"info", "show CUDA devices, the driver, and which backend auto picks and why", runInfo},
		{"bench", "run benchmark cases on a device", runBench},
		{"tokenize", "print the token ids of a text with a GGUF model's tokenizer", runTokenize},
		{"generate", "generate text with a LLaMA-family GGUF model (default: the built-in model)", runGenerate},
		{"eval", "score tokens with a model: log-probabilities, perplexity, raw logits", runEval},
		{"gguf", "show a GGUF file's metadata and tensors; dequantize one tensor to float32", runGGUF},
	}
}

// errUsage marks an error caused by the command line (exit status 2).
var errUsage = errors.New("usage")

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] == "-h" || args[0] == "-help" || args[0] == "--help" || args[0] == "help" {
		usage(stderr)
		if len(args) == 0 {
			return 2
		}
		return 0
	}
	for _, c := range commands() {
		if c.name == args[0] {
			err := c.run(ctx, args[1:], stdout, stderr)
			switch {
			case err == nil:
				return 0
			case errors.Is(err, flag.ErrHelp):
				return 0
			case errors.Is(err, errUsage):
				fmt.Fprintf(stderr, "kiln %s: %v\n", c.name, err)
				return 2
			default:
				fmt.Fprintf(stderr, "kiln %s: %v\n", c.name, err)
				return 1
			}
		}
	}
	fmt.Fprintf(stderr, "kiln: unknown command %q\n\n", args[0])
	usage(stderr)
	return 2
}

func usage(w io.Writer) {
	fmt.Fprintln(w, "kiln — generative-AI inference on NVIDIA GPUs, with a pure-Go CPU fallback")
	fmt.Fprintln(w, "\nUsage: kiln <command> [flags]\n\nCommands:")
	cs := commands()
	sort.Slice(cs, func(i, j int) bool { return cs[i].name < cs[j].name })
	for _, c := range cs {
		fmt.Fprintf(w, "  %-9s %s\n", c.name, c.summary)
	}
	fmt.Fprintln(w, "\nRun 'kiln <command> -h' for a command's flags.")
}

// newFlagSet makes a flag set that reports errors instead of exiting.
func newFlagSet(name string, stderr io.Writer, synopsis string) *flag.FlagSet {
	fs := flag.NewFlagSet("kiln "+name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage: kiln %s %s\n\nFlags:\n", name, synopsis)
		fs.PrintDefaults()
	}
	return fs
}

// parseFlags parses args and rejects stray positional arguments.
func parseFlags(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return fmt.Errorf("%w: %v", errUsage, err)
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("%w: unexpected arguments: %s", errUsage, strings.Join(fs.Args(), " "))
	}
	return nil
}
