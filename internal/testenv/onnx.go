package testenv

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/emberfhir/ember/internal/onnxlib"
	"github.com/emberfhir/ember/internal/testfiles"
)

// ONNXRuntime returns the path of the ONNX Runtime shared library for tests
// that run models: $EMBER_ONNXRUNTIME_LIB when set, else
// bin/libonnxruntime.so at the module root, fetched there the way
// `make onnxruntime` does when absent. It applies Missing when none can be
// had (no npm, no registry).
func ONNXRuntime(tb testing.TB) string {
	tb.Helper()
	if p := os.Getenv("EMBER_ONNXRUNTIME_LIB"); p != "" {
		if _, err := os.Stat(p); err != nil {
			Missing(tb, "EMBER_ONNXRUNTIME_LIB names no file ("+err.Error()+")", "unset it or run `make onnxruntime`")
		}
		return p
	}
	p, err := installONNXRuntime()
	Require(tb, err, "the ONNX Runtime library (bin/"+onnxlib.FileName+")",
		"run `make onnxruntime` (needs npm: "+NodeJS+") or set EMBER_ONNXRUNTIME_LIB")
	return p
}

// installONNXRuntime puts the library at bin/ under the module root; when
// it is already there, that costs one SHA-256 of the file.
func installONNXRuntime() (string, error) {
	root, err := testfiles.ModuleRoot()
	if err != nil {
		return "", err
	}
	p := filepath.Join(root, "bin", onnxlib.FileName)
	if err := onnxlib.Install(context.Background(), p); err != nil {
		return "", err
	}
	return p, nil
}
