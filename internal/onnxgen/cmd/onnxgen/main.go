// Command onnxgen writes the generated test and demo models and their
// manifests under -testdata (models/ and models-bad/); see package onnxgen.
package main

import (
	"flag"
	"fmt"
	"os"

	"github.com/emberfhir/ember/internal/onnxgen"
)

func main() {
	dir := flag.String("testdata", "testdata", "the repository's testdata directory")
	flag.Parse()
	if err := onnxgen.Write(*dir); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}
