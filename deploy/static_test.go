package deploy

import (
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
)

// No container runtime runs on the machines this project tests on (no
// Docker daemon, no registry to pull base images from), so the Dockerfile
// and compose.yaml are checked by reading them: what they promise, and
// that every file, stage, port and service they name exists; compose.yaml
// is also loaded by compose-go, as `docker compose config` would.

// instruction is one Dockerfile instruction with its continuation lines
// joined.
type instruction struct {
	cmd  string // upper case
	args string
}

func parseDockerfile(t *testing.T, path string) []instruction {
	t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var out []instruction
	var cur strings.Builder
	for _, line := range strings.Split(string(raw), "\n") {
		trimmed := strings.TrimSpace(line)
		if strings.HasPrefix(trimmed, "#") {
			continue // comments and parser directives
		}
		if strings.HasSuffix(trimmed, "\\") {
			cur.WriteString(strings.TrimSuffix(trimmed, "\\") + " ")
			continue
		}
		cur.WriteString(trimmed)
		if s := strings.TrimSpace(cur.String()); s != "" {
			cmd, args, _ := strings.Cut(s, " ")
			out = append(out, instruction{strings.ToUpper(cmd), strings.TrimSpace(args)})
		}
		cur.Reset()
	}
	return out
}

// TestDockerfile: multi-stage; the runtime stage is a slim Debian without
// a PostgreSQL server, runs as a non-root user, declares its only writable
// paths as volumes, exposes HTTP and DIMSE, and checks health with the
// binary's own subcommand; CGO stays on for onnxruntime_go; the ONNX
// Runtime library is optional.
func TestDockerfile(t *testing.T) {
	ins := parseDockerfile(t, "Dockerfile")
	stages := map[string]bool{}
	var final []instruction // the last stage's instructions
	var froms []string
	for _, in := range ins {
		if in.cmd == "FROM" {
			f := strings.Fields(in.args)
			froms = append(froms, f[0])
			if len(f) == 3 && strings.EqualFold(f[1], "AS") {
				stages[f[2]] = true
			}
			final = nil
		}
		final = append(final, in)
		if in.cmd == "COPY" {
			for _, f := range strings.Fields(in.args) {
				if from, ok := strings.CutPrefix(f, "--from="); ok && !stages[from] {
					t.Errorf("COPY --from=%s: no earlier stage of that name", from)
				}
			}
		}
	}
	if len(froms) < 2 {
		t.Fatalf("%d stages, want a build stage and a runtime stage", len(froms))
	}
	if !strings.HasPrefix(froms[0], "golang:") {
		t.Errorf("first stage FROM %s, want a golang image", froms[0])
	}
	if base := froms[len(froms)-1]; !strings.HasPrefix(base, "debian:") || !strings.HasSuffix(base, "-slim") {
		t.Errorf("runtime stage FROM %s, want debian:*-slim (glibc for the cgo binary)", base)
	}
	get := func(cmd string) []string {
		var out []string
		for _, in := range final {
			if in.cmd == cmd {
				out = append(out, in.args)
			}
		}
		return out
	}
	all := func(cmd string) string {
		var out []string
		for _, in := range ins {
			if in.cmd == cmd {
				out = append(out, in.args)
			}
		}
		return strings.Join(out, "\n")
	}
	users := get("USER")
	if len(users) == 0 {
		t.Error("the runtime stage has no USER: it would run as root")
	}
	for _, u := range users {
		name, _, _ := strings.Cut(u, ":")
		if name == "root" || name == "0" {
			t.Errorf("USER %s", u)
		}
	}
	for _, r := range get("RUN") {
		if strings.Contains(r, "postgresql") && !strings.Contains(r, "postgresql-client") {
			t.Errorf("the runtime stage installs a PostgreSQL server: %s", r)
		}
	}
	hc := get("HEALTHCHECK")
	if len(hc) != 1 || !strings.Contains(hc[0], `"ember", "healthcheck"`) {
		t.Errorf("HEALTHCHECK %q, want one that runs ember healthcheck", hc)
	}
	exposed := strings.Fields(strings.Join(get("EXPOSE"), " "))
	for _, p := range []string{"8080", "11112"} {
		if !slices.Contains(exposed, p) {
			t.Errorf("EXPOSE %v lacks %s", exposed, p)
		}
	}
	env := strings.Join(get("ENV"), " ")
	for _, want := range []string{"EMBER_ADDR=0.0.0.0:8080", "EMBER_DATA_DIR=/var/lib/ember"} {
		if !strings.Contains(env, want) {
			t.Errorf("ENV lacks %s: %s", want, env)
		}
	}
	volumes := strings.Join(get("VOLUME"), " ")
	for _, v := range []string{`"/var/lib/ember"`, `"/tmp"`} {
		if !strings.Contains(volumes, v) {
			t.Errorf("VOLUME %s lacks %s: with a read-only root it is the only place to write", volumes, v)
		}
	}
	if !strings.Contains(all("RUN"), "CGO_ENABLED=1 go build") {
		t.Error("the build does not keep CGO on: onnxruntime_go needs it")
	}
	if !strings.Contains(all("ARG"), "ONNXRUNTIME=0") || !strings.Contains(all("RUN"), "internal/onnxlib/install") {
		t.Error("no optional ONNX Runtime stage (ARG ONNXRUNTIME, internal/onnxlib/install)")
	}
	// The build context is the repository root: what the build copies
	// must not be ignored, and the ignore file must sit where BuildKit
	// looks for it.
	ignore, err := os.ReadFile("Dockerfile.dockerignore")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(ignore), "\n") {
		switch strings.TrimSpace(line) {
		case "cmd", "internal", "go.mod", "go.sum", "store", "*":
			t.Errorf("Dockerfile.dockerignore excludes %q, which the build needs", line)
		}
	}
}

// TestCompose: PostgreSQL, a migration step, Ember, Prometheus and
// Grafana; Ember runs as the chart runs it (read-only root, tmpfs /tmp,
// metrics on their own port); every file mounted, every port scraped and
// every service depended on exists.
func TestCompose(t *testing.T) {
	var c struct {
		Services map[string]struct {
			Image       string
			Build       struct{ Context, Dockerfile string }
			Command     []string
			Environment map[string]string
			Ports       []string
			Volumes     []string
			ReadOnly    bool `yaml:"read_only"`
			Tmpfs       []string
			CapDrop     []string `yaml:"cap_drop"`
			DependsOn   map[string]struct {
				Condition string
			} `yaml:"depends_on"`
		}
		Volumes map[string]any
	}
	readYAML(t, "compose.yaml", &c)
	for _, s := range []string{"postgres", "migrate", "ember", "prometheus", "grafana"} {
		if _, ok := c.Services[s]; !ok {
			t.Errorf("compose.yaml has no %s service", s)
		}
	}
	for _, name := range []string{"migrate", "ember"} {
		s := c.Services[name]
		if s.Build.Dockerfile == "" || s.Build.Context == "" {
			t.Errorf("%s: not built from the Dockerfile", name)
		} else if _, err := os.Stat(filepath.Join(s.Build.Context, s.Build.Dockerfile)); err != nil {
			t.Errorf("%s: build: %v", name, err)
		}
		if !s.ReadOnly || !slices.Contains(s.Tmpfs, "/tmp") || !slices.Contains(s.CapDrop, "ALL") {
			t.Errorf("%s: want read_only, tmpfs /tmp and cap_drop ALL", name)
		}
		if !strings.Contains(s.Environment["EMBER_DATABASE_URL"], "@postgres:5432/") {
			t.Errorf("%s: EMBER_DATABASE_URL %q does not name the postgres service", name, s.Environment["EMBER_DATABASE_URL"])
		}
		if s.DependsOn["postgres"].Condition != "service_healthy" {
			t.Errorf("%s: does not wait for a healthy postgres", name)
		}
	}
	if got := c.Services["migrate"].Command; !slices.Equal(got, []string{"migrate"}) {
		t.Errorf("migrate command %v", got)
	}
	e := c.Services["ember"]
	if e.DependsOn["migrate"].Condition != "service_completed_successfully" {
		t.Error("ember does not wait for the migration")
	}
	_, metricsPort, _ := strings.Cut(e.Environment["EMBER_METRICS_ADDR"], ":")
	if metricsPort == "" {
		t.Fatal("ember: no EMBER_METRICS_ADDR for Prometheus to scrape")
	}
	for _, p := range e.Ports {
		if !strings.HasPrefix(p, "127.0.0.1:") {
			t.Errorf("ember publishes %s beyond loopback", p)
		}
		if strings.HasSuffix(p, ":"+metricsPort) {
			t.Errorf("ember publishes its unauthenticated metrics port %s", p)
		}
	}
	// Every bind-mounted file exists; every named volume is declared.
	for name, s := range c.Services {
		for _, v := range s.Volumes {
			src, _, _ := strings.Cut(v, ":")
			if strings.HasPrefix(src, ".") {
				if _, err := os.Stat(src); err != nil {
					t.Errorf("%s mounts %s: %v", name, src, err)
				}
			} else if _, ok := c.Volumes[src]; !ok {
				t.Errorf("%s mounts volume %s, which compose.yaml does not declare", name, src)
			}
		}
	}

	// Prometheus scrapes the ember service's metrics port.
	var prom struct {
		ScrapeConfigs []struct {
			MetricsPath   string                       `yaml:"metrics_path"`
			StaticConfigs []struct{ Targets []string } `yaml:"static_configs"`
		} `yaml:"scrape_configs"`
	}
	readYAML(t, "prometheus.yml", &prom)
	var scraped bool
	for _, sc := range prom.ScrapeConfigs {
		for _, st := range sc.StaticConfigs {
			scraped = scraped || (slices.Contains(st.Targets, "ember:"+metricsPort) && sc.MetricsPath == "/metrics")
		}
	}
	if !scraped {
		t.Errorf("prometheus.yml does not scrape ember:%s/metrics", metricsPort)
	}

	// Grafana: the provisioned datasource is the prometheus service, and
	// the dashboard provider reads where compose mounts the dashboard.
	var ds struct {
		Datasources []struct{ UID, Type, URL string }
	}
	readYAML(t, "grafana/provisioning/datasources/prometheus.yaml", &ds)
	if len(ds.Datasources) != 1 || ds.Datasources[0].URL != "http://prometheus:9090" || ds.Datasources[0].Type != "prometheus" {
		t.Errorf("grafana datasource %+v, want the prometheus service", ds.Datasources)
	}
	var prov struct {
		Providers []struct {
			Options struct{ Path string }
		}
	}
	readYAML(t, "grafana/provisioning/dashboards/ember.yaml", &prov)
	var mounted bool
	for _, v := range c.Services["grafana"].Volumes {
		src, dst, _ := strings.Cut(v, ":")
		dst, _, _ = strings.Cut(dst, ":")
		if src == "./"+dashboardFile && len(prov.Providers) == 1 && filepath.Dir(dst) == prov.Providers[0].Options.Path {
			mounted = true
		}
	}
	if !mounted {
		t.Errorf("grafana does not mount %s where its dashboard provider reads", dashboardFile)
	}
}

// TestComposeLoads: compose.yaml loads as docker compose would load it
// (compose-go, the library of `docker compose config`): the compose-spec
// schema, interpolation, the x-ember merge, every depends_on naming a
// service. A copy with a misspelt key must fail, so the check is real.
func TestComposeLoads(t *testing.T) {
	cc := localTool(t, "testdata/composecheck")
	out, err := exec.Command(cc, "compose.yaml").CombinedOutput()
	if err != nil {
		t.Fatalf("compose.yaml does not load: %v\n%s", err, out)
	}
	var p struct {
		Services map[string]struct {
			ReadOnly bool `yaml:"read_only"`
			Image    string
		}
	}
	if err := yaml.Unmarshal(out, &p); err != nil {
		t.Fatalf("resolved project: %v\n%s", err, out)
	}
	// The merged x-ember block reached both Ember services.
	for _, s := range []string{"migrate", "ember"} {
		if !p.Services[s].ReadOnly || p.Services[s].Image != "ember:local" {
			t.Errorf("resolved %s: %+v, want the x-ember image, read-only", s, p.Services[s])
		}
	}

	raw, err := os.ReadFile("compose.yaml")
	if err != nil {
		t.Fatal(err)
	}
	bad := filepath.Join(t.TempDir(), "compose.yaml")
	if err := os.WriteFile(bad, []byte(strings.Replace(string(raw), "read_only:", "read_onyl:", 1)), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(cc, bad).CombinedOutput(); err == nil || !strings.Contains(string(out), "read_onyl") {
		t.Errorf("a misspelt key loaded: %v\n%s", err, out)
	}
}

func readYAML(t *testing.T, path string, v any) {
	t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(raw, v); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
}
