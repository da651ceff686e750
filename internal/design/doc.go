// Package design holds the test that keeps DESIGN.md true: its layout table
// names every package of the module with the Ember packages each imports,
// and its dependency rules hold for the code (see design_test.go).
package design
