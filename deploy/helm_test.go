package deploy

import (
	"bytes"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
)

const chartDir = "helm/ember"

// kubeVersion is the Kubernetes release the chart is rendered for and its
// schemas come from. A helm built by `go install` lacks the release
// build's version stamps and would assume v1.20.
const kubeVersion = "1.36.0"

// chartCase is one combination of values: the chart must render it, lint
// it strictly and pass kubeconform, and the rendering must hold check.
type chartCase struct {
	name  string
	set   []string
	kinds []string // every kind rendered, sorted, hooks included
	check func(t *testing.T, m manifests)
}

var chartCases = []chartCase{
	{
		name: "defaults",
		// Only what the chart requires: the database and, for SMART's
		// token issuer, an https base.
		set: []string{"database.url=postgres://ember:secret@db.example.org:5432/ember?sslmode=require",
			"baseURL=https://fhir.example.org/r4/fhir"},
		kinds: []string{"ConfigMap", "Deployment", "Job", "Secret", "Secret", "Service", "ServiceAccount"},
		check: func(t *testing.T, m manifests) {
			d := m.one(t, "Deployment")
			if got := d.get("spec", "replicas"); got != 1 {
				t.Errorf("replicas %v, want 1", got)
			}
			cm := m.one(t, "ConfigMap")
			for k, want := range map[string]string{
				"EMBER_BASE_URL":     "https://fhir.example.org/r4/fhir",
				"EMBER_DIMSE_ADDR":   "off",
				"EMBER_METRICS_ADDR": "0.0.0.0:9464",
				"EMBER_AUTH":         "smart",
			} {
				if got := cm.get("data", k); got != want {
					t.Errorf("ConfigMap %s = %v, want %q", k, got, want)
				}
			}
			if got := cm.get("data", "EMBER_DICOM_BLOB_URL"); got != nil {
				t.Errorf("EMBER_DICOM_BLOB_URL %v without dicom.blobURL", got)
			}
			// The database URL is in Secrets only, one of them the
			// migration hook's own.
			if strings.Contains(toYAML(t, cm), "secret@db") {
				t.Error("the database URL (with its password) is in the ConfigMap")
			}
			var hookSecret bool
			for _, s := range m.all("Secret") {
				if s.get("metadata", "annotations", "helm.sh/hook") == "pre-install,pre-upgrade" {
					hookSecret = true
				}
			}
			if !hookSecret {
				t.Error("no hook Secret for the migration Job, which runs before the release's own Secret exists")
			}
		},
	},
	{
		name: "production",
		set: []string{
			"database.existingSecret=ember-db",
			"image.tag=1.2.3",
			"ingress.enabled=true", "ingress.className=nginx", "ingress.host=fhir.example.org",
			"ingress.tls.enabled=true", "ingress.tls.secretName=fhir-tls",
			"autoscaling.enabled=true", "autoscaling.minReplicas=3",
			"dicom.blobURL=s3://ember-dicom?region=eu-west-1",
			"dicom.credentialsSecret=ember-s3",
			"dicom.dimse.enabled=true", "dicom.dimse.aeAllow=PACS1:store+find",
			"metrics.serviceMonitor.enabled=true",
			"serviceAccount.annotations.eks\\.amazonaws\\.com/role-arn=arn:aws:iam::1:role/ember",
		},
		kinds: []string{"ConfigMap", "Deployment", "HorizontalPodAutoscaler", "Ingress", "Job",
			"PodDisruptionBudget", "Service", "ServiceAccount", "ServiceMonitor"},
		check: func(t *testing.T, m manifests) {
			d := m.one(t, "Deployment")
			if got := d.get("spec", "replicas"); got != nil {
				t.Errorf("replicas %v with autoscaling: the HPA owns the count", got)
			}
			c := d.container(t)
			if got := c.find("env", "name", "EMBER_DATABASE_URL").get("valueFrom", "secretKeyRef", "name"); got != "ember-db" {
				t.Errorf("EMBER_DATABASE_URL from %v, want the existing Secret ember-db", got)
			}
			if c.find("envFrom", "secretRef.name", "ember-s3").missing() {
				t.Error("the S3 credentials Secret is not in envFrom")
			}
			if got := c.get("image"); got != "ember:1.2.3" {
				t.Errorf("image %v", got)
			}
			if c.find("ports", "name", "dicom").missing() || m.one(t, "Service").find("spec.ports", "name", "dicom").missing() {
				t.Error("DIMSE enabled but no dicom port on the container and the Service")
			}
			cm := m.one(t, "ConfigMap")
			for k, want := range map[string]string{
				"EMBER_BASE_URL":       "https://fhir.example.org/fhir",
				"EMBER_DICOM_BLOB_URL": "s3://ember-dicom?region=eu-west-1",
				"EMBER_DIMSE_ADDR":     "0.0.0.0:11112",
				"EMBER_AE_ALLOW":       "PACS1:store+find",
				"EMBER_TRUST_PROXY":    "1",
			} {
				if got := cm.get("data", k); got != want {
					t.Errorf("ConfigMap %s = %v, want %q", k, got, want)
				}
			}
			ing := m.one(t, "Ingress")
			if got := ing.get("spec", "tls", 0, "secretName"); got != "fhir-tls" {
				t.Errorf("ingress TLS secret %v", got)
			}
			if got := ing.get("spec", "ingressClassName"); got != "nginx" {
				t.Errorf("ingressClassName %v", got)
			}
			if got := m.one(t, "HorizontalPodAutoscaler").get("spec", "minReplicas"); got != 3 {
				t.Errorf("HPA minReplicas %v", got)
			}
			sm := m.one(t, "ServiceMonitor")
			if got := sm.get("spec", "endpoints", 0, "port"); got != "metrics" {
				t.Errorf("ServiceMonitor port %v, want metrics", got)
			}
			if m.one(t, "Service").find("spec.ports", "name", "metrics").missing() {
				t.Error("ServiceMonitor scrapes a port the Service lacks")
			}
			if job := m.one(t, "Job"); job.container(t).find("env", "name", "EMBER_DATABASE_URL").get("valueFrom", "secretKeyRef", "name") != "ember-db" {
				t.Error("the migration Job does not read the existing database Secret")
			}
		},
	},
	{
		name: "replicas on a shared volume",
		set: []string{"database.url=postgres://db/ember", "replicaCount=3", "persistence.existingClaim=ember-shared",
			"migration.enabled=false", "serviceAccount.create=false", "metrics.enabled=false", "auth=none"},
		kinds: []string{"ConfigMap", "Deployment", "PodDisruptionBudget", "Secret", "Service"},
		check: func(t *testing.T, m manifests) {
			d := m.one(t, "Deployment")
			if got := d.get("spec", "replicas"); got != 3 {
				t.Errorf("replicas %v, want 3", got)
			}
			if got := d.find("spec.template.spec.volumes", "name", "data").get("persistentVolumeClaim", "claimName"); got != "ember-shared" {
				t.Errorf("data volume claim %v", got)
			}
			if !m.one(t, "Service").find("spec.ports", "name", "metrics").missing() {
				t.Error("metrics port with metrics.enabled=false")
			}
			// Without SMART an in-cluster http base is allowed.
			if got := m.one(t, "ConfigMap").get("data", "EMBER_BASE_URL"); got != "http://ember.ember.svc:80/fhir" {
				t.Errorf("EMBER_BASE_URL %v, want the in-cluster Service", got)
			}
		},
	},
}

// TestHelmChart renders the chart with helm in each value combination,
// lints it strictly, validates every manifest with kubeconform against the
// Kubernetes 1.36 schemas (strict: unknown fields fail), and checks what
// each combination promises.
func TestHelmChart(t *testing.T) {
	helm := goTool(t, helmPkg, helmVersion)
	kubeconform := goTool(t, kubeconformPkg, kubeconformVersion)
	schemaDir := t.TempDir()
	writeSchemas(t, schemaDir)

	for _, c := range chartCases {
		t.Run(c.name, func(t *testing.T) {
			args := []string{}
			for _, s := range c.set {
				args = append(args, "--set", s)
			}
			if out, err := run(helm, append([]string{"lint", "--strict", "--kube-version", kubeVersion, chartDir}, args...)...); err != nil {
				t.Fatalf("helm lint --strict: %v\n%s", err, out)
			}
			out, err := run(helm, append([]string{"template", "ember", chartDir, "--namespace", "ember", "--kube-version", kubeVersion}, args...)...)
			if err != nil {
				t.Fatalf("helm template: %v\n%s", err, out)
			}
			kubeconformValid(t, kubeconform, schemaDir, out)
			m := parseManifests(t, out)
			if got := m.kinds(); !slices.Equal(got, c.kinds) {
				t.Errorf("kinds %v, want %v", got, c.kinds)
			}
			checkHardening(t, m)
			c.check(t, m)
		})
	}
}

// TestHelmChartRefuses: values that would deploy something broken fail at
// render time, saying what to set.
func TestHelmChartRefuses(t *testing.T) {
	helm := goTool(t, helmPkg, helmVersion)
	for _, c := range []struct {
		set  []string
		want string
	}{
		{nil, "database.url or database.existingSecret"},
		{[]string{"database.url=postgres://db/e"}, "https FHIR base"},
		{[]string{"database.url=postgres://db/e", "ingress.enabled=true"}, "https FHIR base"},
		{[]string{"database.url=postgres://db/e", "auth=none", "replicaCount=2"}, "dicom.blobURL"},
		{[]string{"database.url=postgres://db/e", "auth=none", "autoscaling.enabled=true"}, "dicom.blobURL"},
		{[]string{"database.url=postgres://db/e", "auth=none", "dicom.dimse.enabled=true"}, "dicom.dimse.aeAllow"},
	} {
		args := []string{"template", "ember", chartDir, "--kube-version", kubeVersion}
		for _, s := range c.set {
			args = append(args, "--set", s)
		}
		out, err := run(helm, args...)
		if err == nil || !strings.Contains(string(out), c.want) {
			t.Errorf("helm template %v: err %v, output %s; want a failure naming %s", c.set, err, out, c.want)
		}
	}
}

// TestKubeconformCatches: the validator really validates against the
// committed schemas: a misspelt field, a wrong type and a kind it has no
// schema for each fail.
func TestKubeconformCatches(t *testing.T) {
	kubeconform := goTool(t, kubeconformPkg, kubeconformVersion)
	schemaDir := t.TempDir()
	writeSchemas(t, schemaDir)
	for name, doc := range map[string]string{
		"misspelt field": "apiVersion: v1\nkind: Service\nmetadata: {name: x}\nspec: {portz: []}\n",
		"wrong type":     "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: x}\nspec: {replicas: two, selector: {}, template: {}}\n",
		"unknown kind":   "apiVersion: example.org/v1\nkind: Widget\nmetadata: {name: x}\n",
		"servicemonitor": "apiVersion: monitoring.coreos.com/v1\nkind: ServiceMonitor\nmetadata: {name: x}\nspec: {selector: {}, endpoints: [{port: metrics, intervall: 30s}]}\n",
	} {
		if out, err := kubeconformRun(kubeconform, schemaDir, []byte(doc)); err == nil {
			t.Errorf("%s: kubeconform accepted it:\n%s", name, out)
		}
	}
	ok := "apiVersion: v1\nkind: Service\nmetadata: {name: x}\nspec: {ports: [{port: 80, targetPort: http}]}\n"
	if out, err := kubeconformRun(kubeconform, schemaDir, []byte(ok)); err != nil {
		t.Errorf("a valid Service failed: %v\n%s", err, out)
	}
}

func kubeconformValid(t *testing.T, kubeconform, schemaDir string, manifests []byte) {
	t.Helper()
	if out, err := kubeconformRun(kubeconform, schemaDir, manifests); err != nil {
		t.Fatalf("kubeconform: %v\n%s\nmanifests:\n%s", err, out, manifests)
	}
}

// kubeconformRun validates manifests with the committed schemas only: no
// download, and no skipping of a kind without a schema.
func kubeconformRun(kubeconform, schemaDir string, manifests []byte) ([]byte, error) {
	cmd := exec.Command(kubeconform, "-strict", "-summary",
		"-schema-location", filepath.Join(schemaDir, "{{ .ResourceKind }}{{ .KindSuffix }}.json"), "-")
	cmd.Stdin = bytes.NewReader(manifests)
	return cmd.CombinedOutput()
}

func run(name string, args ...string) ([]byte, error) {
	cmd := exec.Command(name, args...)
	// helm reads no user config or plugins: results depend on the chart.
	home, err := os.MkdirTemp("", "helm-home-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(home)
	cmd.Env = append(os.Environ(), "HELM_CONFIG_HOME="+home, "HELM_CACHE_HOME="+home, "HELM_DATA_HOME="+home)
	var buf, errBuf bytes.Buffer
	cmd.Stdout, cmd.Stderr = &buf, &errBuf
	err = cmd.Run()
	if err != nil {
		return append(buf.Bytes(), errBuf.Bytes()...), err
	}
	return buf.Bytes(), nil
}

// checkHardening: every pod the chart makes runs as non-root on a
// read-only root file system, and the server's probes are the ones Ember
// serves.
func checkHardening(t *testing.T, m manifests) {
	t.Helper()
	for _, kind := range []string{"Deployment", "Job"} {
		for _, o := range m.all(kind) {
			pod := node{o.get("spec", "template", "spec")}
			ps := node{pod.get("securityContext")}
			if ps.get("runAsNonRoot") != true || ps.get("runAsUser") == 0 {
				t.Errorf("%s: pod securityContext %v: want runAsNonRoot and a non-zero user", kind, ps.v)
			}
			for _, c := range pod.list("containers") {
				sc := node{node{c}.get("securityContext")}
				if sc.get("readOnlyRootFilesystem") != true || sc.get("allowPrivilegeEscalation") != false {
					t.Errorf("%s: container securityContext %v: want readOnlyRootFilesystem, no privilege escalation", kind, sc.v)
				}
			}
		}
	}
	d := m.one(t, "Deployment")
	c := d.container(t)
	if got := c.get("livenessProbe", "httpGet", "path"); got != "/healthz" {
		t.Errorf("liveness probe %v, want /healthz", got)
	}
	if got := c.get("readinessProbe", "httpGet", "path"); got != "/readyz" {
		t.Errorf("readiness probe %v, want /readyz", got)
	}
	for _, j := range m.all("Job") {
		if got := j.get("metadata", "annotations", "helm.sh/hook"); got != "pre-install,pre-upgrade" {
			t.Errorf("migration Job hook %v, want pre-install,pre-upgrade", got)
		}
		if args := j.container(t).get("args"); !slices.Equal(toStrings(args), []string{"migrate"}) {
			t.Errorf("migration Job args %v", args)
		}
	}
}

// manifests are helm's rendered documents.
type manifests []node

func parseManifests(t *testing.T, out []byte) manifests {
	t.Helper()
	var m manifests
	dec := yaml.NewDecoder(bytes.NewReader(out))
	for {
		var doc map[string]any
		err := dec.Decode(&doc)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("helm output: %v", err)
		}
		if doc != nil {
			m = append(m, node{doc})
		}
	}
	return m
}

func (m manifests) kinds() []string {
	var ks []string
	for _, o := range m {
		ks = append(ks, o.get("kind").(string))
	}
	slices.Sort(ks)
	return ks
}

func (m manifests) all(kind string) []node {
	var out []node
	for _, o := range m {
		if o.get("kind") == kind {
			out = append(out, o)
		}
	}
	return out
}

func (m manifests) one(t *testing.T, kind string) node {
	t.Helper()
	all := m.all(kind)
	if len(all) != 1 {
		t.Fatalf("%d %s manifests, want 1", len(all), kind)
	}
	return all[0]
}

// node is a decoded YAML value with path lookups.
type node struct{ v any }

// get follows keys (strings) and indexes (ints); nil when absent.
func (n node) get(path ...any) any {
	v := n.v
	for _, p := range path {
		switch p := p.(type) {
		case string:
			m, ok := v.(map[string]any)
			if !ok {
				return nil
			}
			v = m[p]
		case int:
			l, ok := v.([]any)
			if !ok || p >= len(l) {
				return nil
			}
			v = l[p]
		}
	}
	return v
}

func (n node) list(path ...any) []any {
	l, _ := n.get(path...).([]any)
	return l
}

// find returns the element of the list at dotted path whose field (itself
// a dotted path) equals value; its v is nil when there is none.
func (n node) find(path, field string, value any) node {
	for _, e := range n.list(dotted(path)...) {
		if (node{e}).get(dotted(field)...) == value {
			return node{e}
		}
	}
	return node{}
}

func (n node) missing() bool { return n.v == nil }

func (n node) container(t *testing.T) node {
	t.Helper()
	cs := n.list("spec", "template", "spec", "containers")
	if len(cs) != 1 {
		t.Fatalf("%v: %d containers, want 1", n.get("metadata", "name"), len(cs))
	}
	return node{cs[0]}
}

func dotted(p string) []any {
	var out []any
	for _, s := range strings.Split(p, ".") {
		out = append(out, s)
	}
	return out
}

func toStrings(v any) []string {
	l, _ := v.([]any)
	var out []string
	for _, e := range l {
		s, _ := e.(string)
		out = append(out, s)
	}
	return out
}

func toYAML(t *testing.T, n node) string {
	t.Helper()
	b, err := yaml.Marshal(n.v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
