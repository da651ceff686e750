// Package hostile holds Ember's hostile-input suite: an in-process server
// with every HTTP surface mounted (FHIR REST, the SMART authorization
// server, DICOMweb) and a request mutator that turns valid requests into
// malformed and abusive ones. A response must never be a 5xx, never be slow
// and never grow memory without bound. `make test` runs a fixed burst;
// `make fuzz` runs FuzzHTTP under Go's fuzzer. The package has no code
// outside its tests.
package hostile
