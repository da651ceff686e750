package igpkg_test

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"strings"
	"testing"

	"github.com/emberfhir/ember/conformance/igpkg"
	"github.com/emberfhir/ember/conformance/igtest"
)

type file struct {
	name, body string
	typ        byte
}

func archive(t *testing.T, files ...file) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	tw := tar.NewWriter(zw)
	for _, f := range files {
		typ := f.typ
		if typ == 0 {
			typ = tar.TypeReg
		}
		h := &tar.Header{Name: f.name, Mode: 0o644, Size: int64(len(f.body)), Typeflag: typ}
		if typ == tar.TypeSymlink {
			h.Size, h.Linkname = 0, "/etc/passwd"
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if typ == tar.TypeReg {
			if _, err := tw.Write([]byte(f.body)); err != nil {
				t.Fatal(err)
			}
		}
	}
	tw.Close()
	zw.Close()
	return buf.Bytes()
}

const manifest = `{"name":"example.ig","version":"1.0.0","fhirVersions":["4.0.1"]}`

func TestReadUSCore(t *testing.T) {
	p, raw := igtest.USCore(t)
	if p.Key() != "hl7.fhir.us.core#6.1.0" || len(raw) == 0 {
		t.Fatalf("package %s", p.Key())
	}
	n := map[string]int{}
	for _, r := range p.Resources {
		n[r.ResourceType]++
	}
	if n["StructureDefinition"] != 59 || n["SearchParameter"] != 106 || n["ValueSet"] != 36 || len(p.Examples) != 183 {
		t.Errorf("resources %v, %d examples", n, len(p.Examples))
	}
}

func TestReadIsDefensive(t *testing.T) {
	p, err := igpkg.Read(archive(t,
		file{name: "package/package.json", body: manifest},
		file{name: "package/StructureDefinition-a.json", body: `{"resourceType":"StructureDefinition","url":"http://x/a","id":"a"}`},
		file{name: "package/../evil.json", body: `{"resourceType":"Patient"}`},
		file{name: "/package/abs.json", body: `{"resourceType":"Patient"}`},
		file{name: "package/link.json", typ: tar.TypeSymlink},
		file{name: "package/notjson.json", body: `not json`},
		file{name: "package/example/Patient-p.json", body: `{"resourceType":"Patient","id":"p"}`},
		file{name: "package/other/deep.json", body: `{"resourceType":"Patient"}`},
	))
	if err != nil {
		t.Fatal(err)
	}
	if len(p.Resources) != 1 || p.Resources[0].URL != "http://x/a" || len(p.Examples) != 1 {
		t.Errorf("resources %+v examples %+v", p.Resources, p.Examples)
	}
	for _, c := range []struct {
		name string
		data []byte
		want string
	}{
		{"not gzip", []byte("plain"), "not a gzip"},
		{"no manifest", archive(t, file{name: "package/a.json", body: `{}`}), "no package/package.json"},
		{"not R4", archive(t, file{name: "package/package.json", body: `{"name":"x","version":"1","fhirVersions":["5.0.0"]}`}), "Ember serves R4"},
		{"nameless", archive(t, file{name: "package/package.json", body: `{"fhirVersions":["4.0.1"]}`}), "no name and version"},
		{"oversized file", archive(t, file{name: "package/package.json", body: manifest}, file{name: "package/big.json", body: strings.Repeat(" ", igpkg.MaxFile+1)}), "larger than"},
	} {
		if _, err := igpkg.Read(c.data); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want %q", c.name, err, c.want)
		}
	}
}
