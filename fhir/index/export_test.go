package index

// The frozen pre-rewrite implementation (oldextract_test.go), exported to the
// equality tests and benchmarks of package index_test, which cannot be
// internal tests: they load Synthea through internal/synthea, which imports
// store, which imports this package.
var (
	OldExtract        = oldExtract
	OldParseDateRange = oldParseDateRange
	OldNormalize      = oldNormalize
)
