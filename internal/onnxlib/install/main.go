// Command install puts the ONNX Runtime shared library at -out (default
// bin/libonnxruntime.so, next to bin/ember), fetching it once from npm
// (see onnxlib.Install). `make onnxruntime` runs it; a second run with the
// library in place does nothing.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"

	"github.com/emberfhir/ember/internal/onnxlib"
)

func main() {
	out := flag.String("out", "bin/"+onnxlib.FileName, "where to put the library")
	flag.Parse()
	if err := onnxlib.Install(context.Background(), *out); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	fmt.Println(*out)
}
