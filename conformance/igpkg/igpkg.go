// Package igpkg reads an implementation guide package: the npm-format
// tarball (.tgz) FHIR guides publish (package/package.json, one resource
// per package/*.json, examples under package/example/). The archive is
// untrusted input: only regular files under package/ are read, names that
// climb out or hide are refused, and sizes are bounded, so a hostile
// archive costs at most the limits below.
package igpkg

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"sort"
	"strings"
)

// The limits on one package. US Core 6.1 is 1.7 MB compressed and 14 MB
// unpacked, its largest file 1 MB.
const (
	MaxArchive  = 64 << 20  // compressed bytes
	MaxUnpacked = 256 << 20 // bytes of all files read
	MaxFile     = 32 << 20  // bytes of one file
	MaxFiles    = 20000
)

// Package is a guide package's manifest and resources.
type Package struct {
	Name         string
	Version      string
	Canonical    string
	FHIRVersions []string
	// Resources are the package's conformance resources (package/*.json
	// with a resourceType), sorted by file name; Examples those under
	// package/example/.
	Resources []Resource
	Examples  []Resource
}

// Resource is one resource file of a package.
type Resource struct {
	File         string // path inside package/
	ResourceType string
	ID           string
	URL          string // canonical url, when it has one
	Version      string
	JSON         []byte
}

// Key is name#version, the package's usual name.
func (p *Package) Key() string { return p.Name + "#" + p.Version }

// ReadFile reads the package archive at path.
func ReadFile(file string) (*Package, []byte, error) {
	f, err := os.Open(file)
	if err != nil {
		return nil, nil, fmt.Errorf("igpkg: %w", err)
	}
	defer f.Close()
	raw, err := io.ReadAll(io.LimitReader(f, MaxArchive+1))
	if err != nil {
		return nil, nil, fmt.Errorf("igpkg: %s: %w", file, err)
	}
	p, err := Read(raw)
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %w", file, err)
	}
	return p, raw, nil
}

// Read reads a package from its archive's bytes (gzip-compressed tar).
func Read(archive []byte) (*Package, error) {
	if len(archive) > MaxArchive {
		return nil, fmt.Errorf("igpkg: archive larger than %d bytes", MaxArchive)
	}
	zr, err := gzip.NewReader(bytes.NewReader(archive))
	if err != nil {
		return nil, fmt.Errorf("igpkg: not a gzip archive: %w", err)
	}
	tr := tar.NewReader(zr)
	p := &Package{}
	var manifest []byte
	total, files := 0, 0
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("igpkg: reading the archive: %w", err)
		}
		if files++; files > MaxFiles {
			return nil, fmt.Errorf("igpkg: more than %d entries", MaxFiles)
		}
		if h.Typeflag != tar.TypeReg {
			continue // directories, links, devices: nothing a package needs
		}
		name, ok := packagePath(h.Name)
		if !ok || !strings.HasSuffix(name, ".json") {
			continue
		}
		if h.Size > MaxFile {
			return nil, fmt.Errorf("igpkg: %s is larger than %d bytes", h.Name, MaxFile)
		}
		if total += int(h.Size); total > MaxUnpacked {
			return nil, fmt.Errorf("igpkg: more than %d bytes unpacked", MaxUnpacked)
		}
		data, err := io.ReadAll(io.LimitReader(tr, MaxFile+1))
		if err != nil {
			return nil, fmt.Errorf("igpkg: %s: %w", h.Name, err)
		}
		if len(data) > MaxFile {
			return nil, fmt.Errorf("igpkg: %s is larger than %d bytes", h.Name, MaxFile)
		}
		switch dir, base := path.Split(name); {
		case name == "package.json":
			manifest = data
		case dir == "" && base != ".index.json":
			if r, ok := resource(name, data); ok {
				p.Resources = append(p.Resources, r)
			}
		case dir == "example/":
			if r, ok := resource(name, data); ok {
				p.Examples = append(p.Examples, r)
			}
		}
	}
	if manifest == nil {
		return nil, errors.New("igpkg: no package/package.json: not a FHIR package")
	}
	var m struct {
		Name         string   `json:"name"`
		Version      string   `json:"version"`
		Canonical    string   `json:"canonical"`
		FHIRVersions []string `json:"fhirVersions"`
	}
	if err := json.Unmarshal(manifest, &m); err != nil {
		return nil, fmt.Errorf("igpkg: package.json: %w", err)
	}
	if m.Name == "" || m.Version == "" {
		return nil, errors.New("igpkg: package.json names no name and version")
	}
	p.Name, p.Version, p.Canonical, p.FHIRVersions = m.Name, m.Version, m.Canonical, m.FHIRVersions
	if len(p.FHIRVersions) > 0 {
		r4 := false
		for _, v := range p.FHIRVersions {
			r4 = r4 || strings.HasPrefix(v, "4.0")
		}
		if !r4 {
			return nil, fmt.Errorf("igpkg: %s is for FHIR %s; Ember serves R4 (4.0.1)", p.Key(), strings.Join(p.FHIRVersions, ", "))
		}
	}
	sort.Slice(p.Resources, func(i, j int) bool { return p.Resources[i].File < p.Resources[j].File })
	sort.Slice(p.Examples, func(i, j int) bool { return p.Examples[i].File < p.Examples[j].File })
	return p, nil
}

// packagePath returns name relative to package/, refusing names outside it
// or with ".." or empty segments.
func packagePath(name string) (string, bool) {
	name = strings.TrimPrefix(name, "./")
	rest, ok := strings.CutPrefix(name, "package/")
	if !ok || rest == "" || strings.HasPrefix(rest, "/") || strings.Contains(rest, "\\") {
		return "", false
	}
	for _, seg := range strings.Split(rest, "/") {
		if seg == "" || seg == "." || seg == ".." {
			return "", false
		}
	}
	return rest, true
}

// resource reads the identifying members of a resource file; files that
// are not a JSON object with a resourceType are skipped.
func resource(file string, data []byte) (Resource, bool) {
	var head struct {
		ResourceType string `json:"resourceType"`
		ID           string `json:"id"`
		URL          string `json:"url"`
		Version      string `json:"version"`
	}
	if json.Unmarshal(data, &head) != nil || head.ResourceType == "" {
		return Resource{}, false
	}
	return Resource{File: file, ResourceType: head.ResourceType, ID: head.ID, URL: head.URL, Version: head.Version, JSON: data}, true
}

// ByType returns the package's resources of one type.
func (p *Package) ByType(resourceType string) []Resource {
	var out []Resource
	for _, r := range p.Resources {
		if r.ResourceType == resourceType {
			out = append(out, r)
		}
	}
	return out
}
