package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"

	"github.com/kiln-gpu/kiln/models/gguf"
	"github.com/kiln-gpu/kiln/models/tokenizer"
)

// stdin is where commands read standard input (tests replace it).
var stdin io.Reader = os.Stdin

// runTokenize is `kiln tokenize -model FILE [-text TEXT | stdin] [-add-bos]`:
// the token ids of the text, separated by spaces, on one line. Special tokens
// written in the text ("<s>", "<|eot_id|>") are parsed as those tokens.
func runTokenize(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("tokenize", stderr, "-model FILE [-text TEXT] [-add-bos]")
	modelPath := fs.String("model", "", "GGUF `file` whose tokenizer to use (required)")
	text := fs.String("text", "", "the `text` to tokenize; without -text, standard input is read, exactly as given (a trailing newline is part of it)")
	addBOS := fs.Bool("add-bos", false, "put the BOS token first")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *modelPath == "" {
		return fmt.Errorf("%w: -model is required", errUsage)
	}
	textGiven := false
	fs.Visit(func(f *flag.Flag) {
		if f.Name == "text" {
			textGiven = true
		}
	})
	input := *text
	if !textGiven {
		data, err := io.ReadAll(stdin)
		if err != nil {
			return fmt.Errorf("reading standard input: %w", err)
		}
		input = string(data)
	}
	if err := ctx.Err(); err != nil {
		return err
	}

	f, err := gguf.Open(*modelPath)
	if err != nil {
		return err
	}
	defer f.Close()
	tok, err := tokenizer.FromGGUF(f)
	if err != nil {
		return err
	}
	ids, err := tok.Encode(input, tokenizer.EncodeOptions{AddBOS: *addBOS, ParseSpecial: true})
	if err != nil {
		return err
	}
	var b strings.Builder
	for i, id := range ids {
		if i > 0 {
			b.WriteByte(' ')
		}
		b.WriteString(strconv.FormatInt(int64(id), 10))
	}
	b.WriteByte('\n')
	_, err = io.WriteString(stdout, b.String())
	return err
}
