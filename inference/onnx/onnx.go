// Package onnx runs ONNX models on the CPU through ONNX Runtime's shared
// library (github.com/yalue/onnxruntime_go, cgo and dlopen): one Runtime per
// process, one Session per model, created once and shared by every job.
// It knows nothing of DICOM, FHIR or manifests; inference/model checks a
// manifest against what Inspect reads from the model.
package onnx

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"

	ort "github.com/yalue/onnxruntime_go"
)

// LibraryFile is the library's file name next to Ember's executable, where
// `make onnxruntime` puts it (bin/libonnxruntime.so beside bin/ember).
const LibraryFile = "libonnxruntime.so"

// LibraryError says why the ONNX Runtime library cannot be used: not found
// where it was looked for, or found but not loadable (not a library, an
// ONNX Runtime older than API 24), and how to get one. Ember runs without
// inference then, and this is the one line it logs.
type LibraryError struct {
	Path string // the file looked for or loaded
	Err  error
}

func (e *LibraryError) Error() string {
	return fmt.Sprintf("onnx: no usable ONNX Runtime library at %s: %v; "+
		"run `make onnxruntime` to put ONNX Runtime 1.30 at bin/%s next to bin/ember, "+
		"or point --onnxruntime-lib (EMBER_ONNXRUNTIME_LIB) at a libonnxruntime.so of version 1.24 or later",
		e.Path, e.Err, LibraryFile)
}

func (e *LibraryError) Unwrap() error { return e.Err }

// ErrOpen is returned by Open while another Runtime is open.
var ErrOpen = errors.New("onnx: an ONNX Runtime is already open in this process")

// FindLibrary returns the library to load: explicit when not empty (the
// value of --onnxruntime-lib or EMBER_ONNXRUNTIME_LIB, which the caller
// resolves), else LibraryFile in the directory of the running executable.
// The error is a *LibraryError when the file is not there.
func FindLibrary(explicit string) (string, error) {
	p := explicit
	if p == "" {
		exe, err := os.Executable()
		if err != nil {
			return "", &LibraryError{Path: LibraryFile, Err: fmt.Errorf("cannot locate the executable: %w", err)}
		}
		if resolved, err := filepath.EvalSymlinks(exe); err == nil {
			exe = resolved
		}
		p = filepath.Join(filepath.Dir(exe), LibraryFile)
	}
	if err := checkFile(p); err != nil {
		if explicit == "" {
			err = fmt.Errorf("%w (the default: next to the executable)", err)
		}
		return "", &LibraryError{Path: p, Err: err}
	}
	return p, nil
}

func checkFile(p string) error {
	st, err := os.Stat(p)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return errors.New("no such file")
		}
		return err
	}
	if st.IsDir() {
		return errors.New("is a directory")
	}
	return nil
}

// Runtime is the loaded ONNX Runtime library and its environment (OrtEnv).
//
// onnxruntime_go keeps both in package variables: the library is dlopen'ed
// once, the environment (logging, the global thread pools) exists once per
// process, and sessions refer to it. Runtime makes that explicit rather than
// hiding it behind a package-level variable of ours: the program opens one
// at start, hands it to whoever creates sessions, and closes it last, after
// every Session. Open refuses a second one while the first is open.
type Runtime struct {
	path string

	mu     sync.Mutex
	closed bool
}

// Open loads the library at path (see FindLibrary) and creates the ONNX
// Runtime environment; call it once, at start. The error is a *LibraryError when the file is
// missing or cannot be loaded, ErrOpen when a Runtime is already open.
func Open(path string) (*Runtime, error) {
	if err := checkFile(path); err != nil {
		return nil, &LibraryError{Path: path, Err: err}
	}
	// dlopen searches the library path for a name without a slash: make
	// sure it loads the file that was checked.
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, &LibraryError{Path: path, Err: err}
	}
	path = abs
	if ort.IsInitialized() {
		return nil, ErrOpen
	}
	ort.SetSharedLibraryPath(path)
	// Warnings and errors only: ONNX Runtime's default logger writes
	// informational lines to stderr for every session.
	if err := ort.InitializeEnvironment(ort.WithLogLevelError()); err != nil {
		return nil, &LibraryError{Path: path, Err: libraryCause(err)}
	}
	// ONNX Runtime's telemetry is on by default in the official builds; a
	// hospital server sends nothing anywhere.
	if err := ort.DisableTelemetry(); err != nil {
		_ = ort.DestroyEnvironment()
		return nil, &LibraryError{Path: path, Err: fmt.Errorf("disabling telemetry: %w", err)}
	}
	removeTelemetryLog()
	return &Runtime{path: path}, nil
}

// removeTelemetryLog removes the empty mat-debug-PID.log that the official
// builds' telemetry layer (1DS) creates in TMPDIR when the library
// initialises, telemetry disabled or not: otherwise every process that
// loads the library leaves one behind. Only an empty file is removed.
func removeTelemetryLog() {
	p := filepath.Join(os.TempDir(), "mat-debug-"+strconv.Itoa(os.Getpid())+".log")
	if fi, err := os.Stat(p); err == nil && fi.Mode().IsRegular() && fi.Size() == 0 {
		_ = os.Remove(p)
	}
}

// libraryCause turns onnxruntime_go's initialisation errors into what a
// reader can act on.
func libraryCause(err error) error {
	// SetAPIFromBase returns 2 when the library does not offer the API
	// version onnxruntime_go was built for (ORT_API_VERSION 24).
	if strings.Contains(err.Error(), "Error setting ORT API base: 2") {
		return fmt.Errorf("the library is older than ONNX Runtime 1.24 (API 24): %w", err)
	}
	return err
}

// Path returns the library file the Runtime loaded.
func (r *Runtime) Path() string { return r.path }

// Version returns ONNX Runtime's version string, e.g. "1.30.0".
func (r *Runtime) Version() string { return ort.GetVersion() }

// Close destroys the environment; the Runtime's sessions must be closed
// first. A later Open may load a library again.
func (r *Runtime) Close() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return nil
	}
	r.closed = true
	if err := ort.DestroyEnvironment(); err != nil {
		return fmt.Errorf("onnx: close runtime: %w", err)
	}
	return nil
}

func (r *Runtime) check() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return errors.New("onnx: the runtime is closed")
	}
	return nil
}
