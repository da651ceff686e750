// Package fhirpkg locates the official FHIR R4 definitions and examples
// (npm hl7.fhir.r4.examples@4.0.1), fetching them with `npm pack` on first use.
package fhirpkg

import (
	"context"
	"os"

	"github.com/emberfhir/ember/internal/npmpkg"
)

// Name and Version identify the package every generator and test reads.
const (
	Name    = "hl7.fhir.r4.examples"
	Version = "4.0.1"
)

// Dir returns the directory holding the unpacked package's files. It uses
// $EMBER_FHIR_PACKAGE when set, else the npm package cache (see npmpkg.Dir).
func Dir(ctx context.Context) (string, error) {
	if d := os.Getenv("EMBER_FHIR_PACKAGE"); d != "" {
		return d, nil
	}
	return npmpkg.Dir(ctx, Name, Version)
}
