package deploy

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
)

// The Kubernetes JSON schemas kubeconform validates the chart against live
// in testdata/kubernetes-schemas.json.gz, one standalone strict schema per
// kind the chart renders, named as kubeconform's schema-location template
// {{ .ResourceKind }}{{ .KindSuffix }}.json expects (deployment-apps-v1.json).
// kubeconform would download them from GitHub, which this project cannot
// reach; they are made from the OpenAPI documents in two Go modules the
// proxy serves, at the Kubernetes release helm's libraries are built on:
//
//	go test ./deploy -run TestUpdateSchemas -update-schemas
var updateSchemas = flag.Bool("update-schemas", false, "regenerate testdata/kubernetes-schemas.json.gz from the Go module proxy")

const (
	schemasFile = "testdata/kubernetes-schemas.json.gz"
	// kubernetesModule carries api/openapi-spec/swagger.json.
	kubernetesModule = "k8s.io/kubernetes@v1.36.3"
	// prometheusOperatorModule carries the ServiceMonitor CRD.
	prometheusOperatorModule = "github.com/prometheus-operator/prometheus-operator@v0.85.0"
	serviceMonitorCRD        = "example/prometheus-operator-crd/monitoring.coreos.com_servicemonitors.yaml"
)

// schemaKinds are the kinds the chart renders: apiVersion → kind → the
// OpenAPI definition.
var schemaKinds = []struct{ apiVersion, kind, definition string }{
	{"v1", "ConfigMap", "io.k8s.api.core.v1.ConfigMap"},
	{"v1", "Secret", "io.k8s.api.core.v1.Secret"},
	{"v1", "Service", "io.k8s.api.core.v1.Service"},
	{"v1", "ServiceAccount", "io.k8s.api.core.v1.ServiceAccount"},
	{"apps/v1", "Deployment", "io.k8s.api.apps.v1.Deployment"},
	{"batch/v1", "Job", "io.k8s.api.batch.v1.Job"},
	{"networking.k8s.io/v1", "Ingress", "io.k8s.api.networking.v1.Ingress"},
	{"autoscaling/v2", "HorizontalPodAutoscaler", "io.k8s.api.autoscaling.v2.HorizontalPodAutoscaler"},
	{"policy/v1", "PodDisruptionBudget", "io.k8s.api.policy.v1.PodDisruptionBudget"},
}

// schemaBundle is the committed file: where the schemas came from and the
// schemas by file name.
type schemaBundle struct {
	Source  []string                   `json:"source"`
	Schemas map[string]json.RawMessage `json:"schemas"`
}

// schemaFileName is kubeconform's name for a kind's schema file.
func schemaFileName(apiVersion, kind string) string {
	group, version, ok := strings.Cut(apiVersion, "/")
	if !ok {
		return strings.ToLower(kind) + "-" + strings.ToLower(apiVersion) + ".json"
	}
	group, _, _ = strings.Cut(group, ".")
	return strings.ToLower(kind) + "-" + strings.ToLower(group) + "-" + strings.ToLower(version) + ".json"
}

// writeSchemas unpacks the committed schemas into dir.
func writeSchemas(t *testing.T, dir string) {
	t.Helper()
	b := readSchemaBundle(t)
	for name, s := range b.Schemas {
		if err := os.WriteFile(filepath.Join(dir, name), s, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

func readSchemaBundle(t *testing.T) schemaBundle {
	t.Helper()
	raw, err := os.ReadFile(schemasFile)
	if err != nil {
		t.Fatal(err)
	}
	zr, err := gzip.NewReader(bytes.NewReader(raw))
	if err != nil {
		t.Fatalf("%s: %v", schemasFile, err)
	}
	var b schemaBundle
	if err := json.NewDecoder(zr).Decode(&b); err != nil {
		t.Fatalf("%s: %v", schemasFile, err)
	}
	return b
}

// TestSchemasCoverChart: every kind the chart can render has its schema, so
// kubeconform never meets a kind it cannot check (it runs without
// -ignore-missing-schemas).
func TestSchemasCoverChart(t *testing.T) {
	b := readSchemaBundle(t)
	want := []string{schemaFileName("monitoring.coreos.com/v1", "ServiceMonitor")}
	for _, k := range schemaKinds {
		want = append(want, schemaFileName(k.apiVersion, k.kind))
	}
	for _, name := range want {
		if _, ok := b.Schemas[name]; !ok {
			t.Errorf("%s lacks %s: run go test ./deploy -run TestUpdateSchemas -update-schemas", schemasFile, name)
		}
	}
}

// TestUpdateSchemas regenerates the committed schemas (only with
// -update-schemas).
func TestUpdateSchemas(t *testing.T) {
	if !*updateSchemas {
		// Not a skip: under CI any skip fails the run, and there is nothing
		// to check without regenerating (TestSchemasCoverChart checks the
		// committed file).
		return
	}
	b := schemaBundle{
		Source: []string{
			kubernetesModule + " api/openapi-spec/swagger.json",
			prometheusOperatorModule + " " + serviceMonitorCRD,
		},
		Schemas: map[string]json.RawMessage{},
	}
	var swagger struct {
		Definitions map[string]any `json:"definitions"`
	}
	readJSON(t, filepath.Join(moduleDir(t, kubernetesModule), "api/openapi-spec/swagger.json"), &swagger)
	for _, k := range schemaKinds {
		s, err := standaloneSchema(swagger.Definitions, k.definition)
		if err != nil {
			t.Fatal(err)
		}
		b.Schemas[schemaFileName(k.apiVersion, k.kind)] = mustJSON(t, s)
	}
	crds, err := crdSchemas(filepath.Join(moduleDir(t, prometheusOperatorModule), serviceMonitorCRD))
	if err != nil {
		t.Fatal(err)
	}
	for name, s := range crds {
		b.Schemas[name] = mustJSON(t, s)
	}
	var buf bytes.Buffer
	zw, _ := gzip.NewWriterLevel(&buf, gzip.BestCompression)
	enc := json.NewEncoder(zw)
	if err := enc.Encode(b); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(schemasFile, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	names := make([]string, 0, len(b.Schemas))
	for n := range b.Schemas {
		names = append(names, n)
	}
	sort.Strings(names)
	t.Logf("wrote %s (%d bytes): %s", schemasFile, buf.Len(), strings.Join(names, ", "))
}

// moduleDir downloads a module through the Go module proxy (or finds it in
// the module cache) and returns its directory.
func moduleDir(t *testing.T, modAtVersion string) string {
	t.Helper()
	out, err := exec.Command("go", "mod", "download", "-json", modAtVersion).Output()
	if err != nil {
		t.Fatalf("go mod download %s: %v", modAtVersion, err)
	}
	var m struct{ Dir, Error string }
	if err := json.Unmarshal(out, &m); err != nil || m.Dir == "" {
		t.Fatalf("go mod download %s: %v %s %s", modAtVersion, err, m.Error, out)
	}
	return m.Dir
}

func readJSON(t *testing.T, path string, v any) {
	t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(raw, v); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
}

func mustJSON(t *testing.T, v any) json.RawMessage {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// standaloneSchema is the definition root as a JSON schema of its own: the
// definition with every definition it reaches under "definitions", made
// strict (no properties beyond the schema's, as the API server's field
// validation refuses them) and with int-or-string as either type, which is
// what kubeconform's openapi2jsonschema does to Kubernetes' documents.
func standaloneSchema(defs map[string]any, root string) (map[string]any, error) {
	reached := map[string]any{}
	var walk func(v any) error
	walk = func(v any) error {
		switch v := v.(type) {
		case map[string]any:
			if ref, ok := v["$ref"].(string); ok {
				name, ok := strings.CutPrefix(ref, "#/definitions/")
				if !ok {
					return fmt.Errorf("%s: unexpected $ref %q", root, ref)
				}
				if _, done := reached[name]; !done {
					d, ok := defs[name]
					if !ok {
						return fmt.Errorf("%s: $ref to missing %q", root, name)
					}
					reached[name] = d
					if err := walk(d); err != nil {
						return err
					}
				}
			}
			for _, c := range v {
				if err := walk(c); err != nil {
					return err
				}
			}
		case []any:
			for _, c := range v {
				if err := walk(c); err != nil {
					return err
				}
			}
		}
		return nil
	}
	d, ok := defs[root].(map[string]any)
	if !ok {
		return nil, fmt.Errorf("no definition %s", root)
	}
	if err := walk(d); err != nil {
		return nil, err
	}
	s := map[string]any{}
	for k, v := range d {
		s[k] = v
	}
	s["definitions"] = reached
	out := kubeconformShape(s, true).(map[string]any)
	out["$schema"] = "http://json-schema.org/schema#"
	return out, nil
}

// kubeconformShape returns v with additionalProperties false on every
// object schema that lists properties and does not say otherwise or keep
// unknown fields, and int-or-string formats replaced by a oneOf.
func kubeconformShape(v any, strict bool) any {
	switch v := v.(type) {
	case map[string]any:
		if v["format"] == "int-or-string" || v["x-kubernetes-int-or-string"] == true {
			return map[string]any{"oneOf": []any{map[string]any{"type": "string"}, map[string]any{"type": "integer"}}}
		}
		out := make(map[string]any, len(v)+1)
		for k, c := range v {
			if k == "properties" || k == "definitions" || k == "patternProperties" {
				// A map of names to schemas, not a schema: shape its values.
				m, _ := c.(map[string]any)
				sub := make(map[string]any, len(m))
				for name, s := range m {
					sub[name] = kubeconformShape(s, true)
				}
				out[k] = sub
				continue
			}
			out[k] = kubeconformShape(c, true)
		}
		if _, has := v["properties"]; has && strict && v["x-kubernetes-preserve-unknown-fields"] != true {
			if _, set := v["additionalProperties"]; !set {
				out["additionalProperties"] = false
			}
		}
		return out
	case []any:
		out := make([]any, len(v))
		for i, c := range v {
			out[i] = kubeconformShape(c, true)
		}
		return out
	}
	return v
}

// crdSchemas converts a CustomResourceDefinition's versions into
// kubeconform schemas. As openapi2jsonschema does for CRDs, the root object
// stays open (metadata, apiVersion and kind are not in a CRD's schema in
// full) and everything under it is strict.
func crdSchemas(path string) (map[string]any, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var crd struct {
		Spec struct {
			Group string
			Names struct{ Kind string }
			// yaml.v3 decodes the schemas into map[string]any.
			Versions []struct {
				Name   string
				Schema struct {
					OpenAPIV3Schema map[string]any `yaml:"openAPIV3Schema"`
				}
			}
		}
	}
	if err := yaml.Unmarshal(raw, &crd); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	out := map[string]any{}
	for _, v := range crd.Spec.Versions {
		if v.Schema.OpenAPIV3Schema == nil {
			continue
		}
		s := kubeconformShape(v.Schema.OpenAPIV3Schema, false).(map[string]any)
		out[schemaFileName(crd.Spec.Group+"/"+v.Name, crd.Spec.Names.Kind)] = s
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%s: no versions with a schema", path)
	}
	return out, nil
}
