// Command fetch makes sure the official FHIR R4 examples package is in the
// local cache (npm pack, once) and prints its directory.
package main

import (
	"context"
	"fmt"
	"os"

	"github.com/emberfhir/ember/internal/fhirpkg"
)

func main() {
	dir, err := fhirpkg.Dir(context.Background())
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	fmt.Println(dir)
}
