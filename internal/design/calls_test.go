package design

import (
	"go/ast"
	"go/importer"
	"go/parser"
	"go/token"
	"go/types"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

// A rule can forbid calling a method, written `(store.Tx).Create`: a
// package may reach a *store.Tx through another's API without importing
// anything, so only type information tells who calls what.

type methodCall struct {
	pos    string
	method string // (store.Tx).Create, the receiver's package in short form
}

var (
	exportsOnce sync.Once
	exports     map[string]string // import path → export data file
)

// exportData lists, once per test binary, the compiled export data of every
// package the module's code imports (go list -export builds what is missing).
func exportData(t *testing.T, root string) map[string]string {
	t.Helper()
	exportsOnce.Do(func() {
		exports = map[string]string{}
		for _, p := range listPackages(t, root, "-export", "-deps", "./...") {
			if p.Export != "" {
				exports[p.ImportPath] = p.Export
			}
		}
	})
	return exports
}

// methodCalls type-checks p's non-test files and returns every call of a
// method declared in a package of the module.
func methodCalls(t *testing.T, root string, p pkg) []methodCall {
	t.Helper()
	exp := exportData(t, root)
	fset := token.NewFileSet()
	var files []*ast.File
	for _, name := range p.GoFiles {
		f, err := parser.ParseFile(fset, filepath.Join(p.Dir, name), nil, 0)
		if err != nil {
			t.Fatalf("%s: %v", p.ImportPath, err)
		}
		files = append(files, f)
	}
	imp := importer.ForCompiler(fset, "gc", func(path string) (io.ReadCloser, error) {
		file, ok := exp[path]
		if !ok {
			return nil, os.ErrNotExist
		}
		return os.Open(file)
	})
	info := &types.Info{Selections: map[*ast.SelectorExpr]*types.Selection{}}
	conf := types.Config{Importer: imp, Error: func(error) {}}
	if _, err := conf.Check(p.ImportPath, fset, files, info); err != nil {
		t.Fatalf("type-checking %s: %v", p.ImportPath, err)
	}
	var calls []methodCall
	for sel, s := range info.Selections {
		if s.Kind() != types.MethodVal && s.Kind() != types.MethodExpr {
			continue
		}
		fn, ok := s.Obj().(*types.Func)
		if !ok || fn.Pkg() == nil || !strings.HasPrefix(fn.Pkg().Path(), module) {
			continue
		}
		recv := fn.Type().(*types.Signature).Recv()
		if recv == nil {
			continue
		}
		rt := recv.Type()
		if ptr, ok := rt.(*types.Pointer); ok {
			rt = ptr.Elem()
		}
		named, ok := rt.(*types.Named)
		if !ok {
			continue
		}
		pkgName := filepath.Base(short(fn.Pkg().Path()))
		calls = append(calls, methodCall{
			pos:    fset.Position(sel.Pos()).String(),
			method: "(" + pkgName + "." + named.Obj().Name() + ")." + fn.Name(),
		})
	}
	return calls
}
