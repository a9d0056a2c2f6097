// Package deploy_test checks the deployment files under deploy/: they parse,
// the Kubernetes ConfigMap holds a configuration meridiand accepts, the
// systemd unit keeps its hardening and grants CAP_SYS_TIME only through the
// clock-system drop-in, and every metric that the alerts and the dashboard
// query is exported by a running daemon.
package deploy_test

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"
	"text/template"
	"time"

	"go.uber.org/goleak"
	"go.yaml.in/yaml/v3"

	"github.com/meridiantime/meridian/config"
	"github.com/meridiantime/meridian/daemon"
	"github.com/meridiantime/meridian/internal/testdaemon"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

const (
	unitPath      = "systemd/meridiand.service"
	dropInPath    = "systemd/meridiand.service.d/clock-system.conf"
	sysusersPath  = "systemd/meridian.sysusers.conf"
	daemonSetPath = "kubernetes/daemonset.yaml"
	alertsPath    = "prometheus/alerts.yaml"
	dashboardPath = "grafana/meridian-dashboard.json"
)

// files lists the files under deploy/ whose names end in one of exts.
func files(t *testing.T, exts ...string) []string {
	t.Helper()
	var out []string
	err := filepath.WalkDir(".", func(p string, e fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !e.IsDir() && slices.Contains(exts, filepath.Ext(p)) {
			out = append(out, p)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// yamlDocs decodes every document of a (multi-document) YAML file.
func yamlDocs(t *testing.T, path string) []map[string]any {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var docs []map[string]any
	dec := yaml.NewDecoder(f)
	for i := 0; ; i++ {
		var doc map[string]any
		err := dec.Decode(&doc)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("%s: document %d: %v", path, i, err)
		}
		if len(doc) == 0 {
			t.Fatalf("%s: document %d is empty", path, i)
		}
		docs = append(docs, doc)
	}
	if len(docs) == 0 {
		t.Fatalf("%s: no YAML document", path)
	}
	return docs
}

// get walks a decoded YAML/JSON tree: string keys index maps, ints index
// lists. A missing step fails the test.
func get(t *testing.T, v any, path ...any) any {
	t.Helper()
	for i, k := range path {
		switch k := k.(type) {
		case string:
			m, ok := v.(map[string]any)
			if !ok {
				t.Fatalf("%v: not a map", path[:i])
			}
			if v, ok = m[k]; !ok {
				t.Fatalf("%v: no key %q", path[:i], k)
			}
		case int:
			l, ok := v.([]any)
			if !ok || k >= len(l) {
				t.Fatalf("%v: no item %d", path[:i], k)
			}
			v = l[k]
		}
	}
	return v
}

func TestYAMLFilesParse(t *testing.T) {
	paths := files(t, ".yaml", ".yml")
	for _, want := range []string{daemonSetPath, alertsPath} {
		if !slices.Contains(paths, want) {
			t.Errorf("%s missing (found %v)", want, paths)
		}
	}
	for _, p := range paths {
		t.Run(p, func(t *testing.T) { yamlDocs(t, p) })
	}
}

// k8sObjects indexes the documents of daemonset.yaml by "Kind/name".
func k8sObjects(t *testing.T) map[string]map[string]any {
	t.Helper()
	objs := map[string]map[string]any{}
	for i, d := range yamlDocs(t, daemonSetPath) {
		kind, _ := d["kind"].(string)
		name, _ := get(t, d, "metadata", "name").(string)
		if d["apiVersion"] == nil || kind == "" || name == "" {
			t.Fatalf("document %d: apiVersion, kind and metadata.name are required", i)
		}
		objs[kind+"/"+name] = d
	}
	return objs
}

// The ConfigMap's meridiand.yaml is a configuration config.Parse accepts,
// and the DaemonSet mounts what that configuration names.
func TestKubernetesConfigMap(t *testing.T) {
	objs := k8sObjects(t)
	for _, k := range []string{"Namespace/meridian", "ConfigMap/meridiand-config", "DaemonSet/meridiand"} {
		if objs[k] == nil {
			t.Fatalf("%s missing", k)
		}
	}
	text, ok := get(t, objs["ConfigMap/meridiand-config"], "data", "meridiand.yaml").(string)
	if !ok {
		t.Fatal("data.meridiand.yaml is not a string")
	}
	cfg, err := config.Parse([]byte(text))
	if err != nil {
		t.Fatalf("ConfigMap meridiand.yaml: %v", err)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	if cfg.Clock != "virtual" || len(cfg.Sources) != 1 || cfg.Sources[0].Type != "ntp" ||
		cfg.Sources[0].Address != "time.example.internal:123" || cfg.Sources[0].Poll.D() != 16*time.Second ||
		!cfg.Sources[0].IBurst {
		t.Errorf("clock/sources: %+v %+v", cfg.Clock, cfg.Sources)
	}
	if !slices.Equal(cfg.GRPC.Listen, []string{"unix:///run/meridian/grpc.sock"}) || cfg.Metrics.Listen != "0.0.0.0:9390" ||
		cfg.Shm.Path != "/run/meridian/truetime.shm" || cfg.StateDir != "/var/lib/meridian" {
		t.Errorf("listeners/paths: grpc %v metrics %q shm %q state %q", cfg.GRPC.Listen, cfg.Metrics.Listen, cfg.Shm.Path, cfg.StateDir)
	}

	ds := objs["DaemonSet/meridiand"]
	spec := get(t, ds, "spec", "template", "spec")
	if get(t, spec, "hostNetwork") != true {
		t.Error("hostNetwork is not true")
	}
	if tol, _ := get(t, spec, "tolerations", 0, "operator").(string); tol != "Exists" {
		t.Errorf("tolerations: want operator Exists (every node), got %q", tol)
	}
	var c map[string]any
	for _, x := range get(t, spec, "containers").([]any) {
		if x.(map[string]any)["name"] == "meridiand" {
			c = x.(map[string]any)
		}
	}
	if c == nil {
		t.Fatal("no container meridiand")
	}
	if img := get(t, c, "image"); img != "ghcr.io/meridiantime/meridiand:latest" {
		t.Errorf("image %v", img)
	}
	if args := fmt.Sprint(get(t, c, "args")); args != "[--config /etc/meridian/meridiand.yaml]" {
		t.Errorf("args %s", args)
	}
	sc := get(t, c, "securityContext")
	for _, k := range []struct {
		path []any
		want any
	}{
		{[]any{"runAsNonRoot"}, true},
		{[]any{"runAsUser"}, 65532},
		{[]any{"readOnlyRootFilesystem"}, true},
		{[]any{"allowPrivilegeEscalation"}, false},
		{[]any{"capabilities", "drop", 0}, "ALL"},
	} {
		if got := get(t, sc, k.path...); got != k.want {
			t.Errorf("securityContext %v: %v, want %v", k.path, got, k.want)
		}
	}
	if caps := get(t, sc, "capabilities").(map[string]any); caps["add"] != nil {
		t.Errorf("meridiand adds capabilities %v", caps["add"])
	}
	port := get(t, c, "ports", 0).(map[string]any)
	if port["name"] != "metrics" || port["containerPort"] != 9390 || !strings.HasSuffix(cfg.Metrics.Listen, ":9390") {
		t.Errorf("metrics port %v vs metrics.listen %q", port, cfg.Metrics.Listen)
	}
	for probe, want := range map[string]string{"livenessProbe": "/healthz", "readinessProbe": "/readyz"} {
		if p := get(t, c, probe, "httpGet", "path"); p != want {
			t.Errorf("%s path %v, want %s", probe, p, want)
		}
	}
	ann := get(t, ds, "spec", "template", "metadata", "annotations").(map[string]any)
	if ann["prometheus.io/scrape"] != "true" || ann["prometheus.io/port"] != "9390" {
		t.Errorf("prometheus annotations %v", ann)
	}

	// Every path the configuration names lies on the volume mounted there.
	volumes := map[string]map[string]any{}
	for _, v := range get(t, spec, "volumes").([]any) {
		volumes[v.(map[string]any)["name"].(string)] = v.(map[string]any)
	}
	mounts := map[string]map[string]any{} // mountPath → volume
	for _, m := range get(t, c, "volumeMounts").([]any) {
		m := m.(map[string]any)
		mounts[m["mountPath"].(string)] = volumes[m["name"].(string)]
	}
	for _, want := range []struct{ file, hostPath string }{
		{cfg.Shm.Path, "/run/meridian"},
		{strings.TrimPrefix(cfg.GRPC.Listen[0], "unix://"), "/run/meridian"},
		{filepath.Join(cfg.StateDir, "drift"), "/var/lib/meridian"},
	} {
		v := mounts[filepath.Dir(want.file)]
		if v == nil || get(t, v, "hostPath", "path") != want.hostPath || get(t, v, "hostPath", "type") != "DirectoryOrCreate" {
			t.Errorf("%s: not on hostPath %s (DirectoryOrCreate): %v", want.file, want.hostPath, v)
		}
	}
	if v := mounts["/etc/meridian"]; v == nil || get(t, v, "configMap", "name") != "meridiand-config" {
		t.Errorf("/etc/meridian is not the ConfigMap: %v", v)
	}
}

// unitFile is a parsed systemd unit or drop-in: section → key → values of
// the active (uncommented) assignments, in order.
type unitFile map[string]map[string][]string

func parseUnit(t *testing.T, path string) unitFile {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	u := unitFile{}
	section := ""
	sc := bufio.NewScanner(strings.NewReader(string(data)))
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		switch {
		case line == "" || line[0] == '#' || line[0] == ';':
		case line[0] == '[' && line[len(line)-1] == ']':
			section = line[1 : len(line)-1]
			if u[section] == nil {
				u[section] = map[string][]string{}
			}
		default:
			k, v, ok := strings.Cut(line, "=")
			if !ok || section == "" || strings.HasSuffix(line, `\`) {
				t.Fatalf("%s:%d: want key=value in a section, got %q", path, n, line)
			}
			u[section][strings.TrimSpace(k)] = append(u[section][strings.TrimSpace(k)], strings.TrimSpace(v))
		}
	}
	return u
}

func TestSystemdUnit(t *testing.T) {
	u := parseUnit(t, unitPath)
	svc := u["Service"]
	if svc == nil || u["Unit"] == nil || u["Install"] == nil {
		t.Fatalf("sections: %v", u)
	}
	for k, want := range map[string]string{
		"Type":                    "notify",
		"NotifyAccess":            "main",
		"ExecReload":              "/bin/kill -HUP $MAINPID",
		"WatchdogSec":             "30s",
		"ExecStart":               "/usr/local/bin/meridiand --config /etc/meridian/meridiand.yaml",
		"Restart":                 "on-failure",
		"User":                    "meridian",
		"Group":                   "meridian",
		"DynamicUser":             "no",
		"RuntimeDirectory":        "meridian",
		"RuntimeDirectoryMode":    "0750",
		"StateDirectory":          "meridian",
		"ConfigurationDirectory":  "meridian",
		"NoNewPrivileges":         "yes",
		"ProtectSystem":           "strict",
		"ProtectHome":             "yes",
		"PrivateTmp":              "yes",
		"PrivateDevices":          "yes",
		"ProtectKernelModules":    "yes",
		"ProtectKernelTunables":   "yes",
		"ProtectControlGroups":    "yes",
		"RestrictAddressFamilies": "AF_UNIX AF_INET AF_INET6 AF_NETLINK",
		"RestrictNamespaces":      "yes",
		"LockPersonality":         "yes",
		"MemoryDenyWriteExecute":  "yes",
		"SystemCallArchitectures": "native",
		"CapabilityBoundingSet":   "", // no capability at all by default
		"AmbientCapabilities":     "",
	} {
		if got := svc[k]; len(got) != 1 || got[0] != want {
			t.Errorf("[Service] %s=%q, want exactly %s=%s", k, got, k, want)
		}
	}
	for k, want := range map[string]string{"Before": "time-sync.target", "Wants": "time-sync.target"} {
		found := false
		for _, v := range u["Unit"][k] {
			found = found || strings.Contains(v, want)
		}
		if !found {
			t.Errorf("[Unit] %s lacks %s", k, want)
		}
	}
	if !strings.HasSuffix(strings.Fields(svc["ExecStart"][0])[0], "/meridiand") {
		t.Errorf("ExecStart does not run meridiand: %q", svc["ExecStart"])
	}

	d := parseUnit(t, dropInPath)
	for k, want := range map[string]string{
		"CapabilityBoundingSet": "CAP_SYS_TIME",
		"AmbientCapabilities":   "CAP_SYS_TIME",
	} {
		if got := d["Service"][k]; len(got) != 1 || got[0] != want {
			t.Errorf("drop-in [Service] %s=%q, want %s", k, got, want)
		}
	}
	if dropIn, _ := os.ReadFile(dropInPath); !strings.Contains(string(dropIn), "CAP_NET_BIND_SERVICE") {
		t.Error("the drop-in does not mention CAP_NET_BIND_SERVICE for port 123")
	}

	// CAP_SYS_TIME is granted by the clock-system drop-in and nowhere else.
	for _, p := range files(t, ".service", ".conf") {
		if !strings.HasPrefix(p, "systemd/") || strings.HasSuffix(p, ".sysusers.conf") {
			continue
		}
		for sec, kv := range parseUnit(t, p) {
			for _, k := range []string{"AmbientCapabilities", "CapabilityBoundingSet"} {
				for _, v := range kv[k] {
					if strings.Contains(v, "CAP_SYS_TIME") && p != dropInPath {
						t.Errorf("%s [%s] %s=%s: CAP_SYS_TIME belongs only in %s", p, sec, k, v, dropInPath)
					}
				}
			}
		}
	}

	users, err := os.ReadFile(sysusersPath)
	if err != nil {
		t.Fatal(err)
	}
	if !regexp.MustCompile(`(?m)^u\s+meridian\s+-\s+"Meridian time daemon"\s+/var/lib/meridian\s*$`).Match(users) {
		t.Errorf("%s lacks the meridian user line:\n%s", sysusersPath, users)
	}
}

type ruleFile struct {
	Groups []struct {
		Name  string `yaml:"name"`
		Rules []struct {
			Alert       string            `yaml:"alert"`
			Expr        string            `yaml:"expr"`
			For         string            `yaml:"for"`
			Labels      map[string]string `yaml:"labels"`
			Annotations map[string]string `yaml:"annotations"`
		} `yaml:"rules"`
	} `yaml:"groups"`
}

func alertRules(t *testing.T) ruleFile {
	t.Helper()
	data, err := os.ReadFile(alertsPath)
	if err != nil {
		t.Fatal(err)
	}
	var rf ruleFile
	dec := yaml.NewDecoder(strings.NewReader(string(data)))
	dec.KnownFields(true)
	if err := dec.Decode(&rf); err != nil {
		t.Fatalf("%s: %v", alertsPath, err)
	}
	return rf
}

// Prometheus expands annotations as Go templates with $labels and $value
// defined and its own functions; parse and run them the same way.
var promFuncs = template.FuncMap{}

func init() {
	for _, f := range []string{"humanize", "humanize1024", "humanizeDuration", "humanizePercentage", "humanizeTimestamp", "title", "toUpper", "toLower"} {
		promFuncs[f] = func(v any) string { return fmt.Sprint(v) }
	}
}

func TestAlertRules(t *testing.T) {
	rf := alertRules(t)
	if len(rf.Groups) != 1 || rf.Groups[0].Name != "meridian" {
		t.Fatalf("want one group meridian, got %d groups", len(rf.Groups))
	}
	wantFor := map[string]string{
		"MeridianUnsynchronized": "5m", "MeridianHoldover": "10m", "MeridianErrorBoundHigh": "10m",
		"MeridianFalseticker": "5m", "MeridianSourceUnreachable": "10m", "MeridianHLCRejections": "",
		"MeridianGRPCSlow": "10m", "MeridianDown": "2m", "MeridianAbsent": "10m",
	}
	seen := map[string]bool{}
	for _, r := range rf.Groups[0].Rules {
		seen[r.Alert] = true
		want, known := wantFor[r.Alert]
		if !known {
			t.Errorf("unexpected alert %q", r.Alert)
		}
		if r.For != want {
			t.Errorf("%s: for %q, want %q", r.Alert, r.For, want)
		}
		if r.Expr == "" || r.Labels["severity"] == "" {
			t.Errorf("%s: expr %q severity %q", r.Alert, r.Expr, r.Labels["severity"])
		}
		for _, a := range []string{"summary", "description"} {
			text := r.Annotations[a]
			// absent() has no instance label: that alert is about the job.
			needInstance := r.Alert != "MeridianAbsent"
			if (needInstance && !strings.Contains(text, "$labels.instance")) || (a == "description" && !strings.Contains(text, "$value")) {
				t.Errorf("%s: %s %q lacks {{ $labels.instance }} or {{ $value }}", r.Alert, a, text)
			}
			tmpl, err := template.New(a).Funcs(promFuncs).Option("missingkey=zero").
				Parse("{{$labels := .Labels}}{{$value := .Value}}" + text)
			if err != nil {
				t.Errorf("%s: %s: %v", r.Alert, a, err)
				continue
			}
			var out strings.Builder
			data := map[string]any{"Labels": map[string]string{"instance": "node1:9390"}, "Value": 0.5}
			if err := tmpl.Execute(&out, data); err != nil || (needInstance && !strings.Contains(out.String(), "node1:9390")) {
				t.Errorf("%s: %s expands to %q (%v)", r.Alert, a, out.String(), err)
			}
		}
	}
	for a := range wantFor {
		if !seen[a] {
			t.Errorf("alert %s missing", a)
		}
	}
	// Holdover is its own alert: "unsynchronized" must not fire in holdover.
	for _, r := range rf.Groups[0].Rules {
		if r.Alert == "MeridianUnsynchronized" && !strings.Contains(r.Expr, "meridian_status == 0") {
			t.Errorf("MeridianUnsynchronized: %q", r.Expr)
		}
	}
}

type panel struct {
	ID         int             `json:"id"`
	Type       string          `json:"type"`
	Title      string          `json:"title"`
	Datasource json.RawMessage `json:"datasource"`
	Targets    []struct {
		Expr string `json:"expr"`
	} `json:"targets"`
	Panels      []panel        `json:"panels"` // collapsed rows
	FieldConfig map[string]any `json:"fieldConfig"`
}

type dashboard struct {
	UID           string `json:"uid"`
	Title         string `json:"title"`
	SchemaVersion int    `json:"schemaVersion"`
	Templating    struct {
		List []struct {
			Name  string `json:"name"`
			Type  string `json:"type"`
			Query any    `json:"query"`
		} `json:"list"`
	} `json:"templating"`
	Panels []panel `json:"panels"`
}

func loadDashboard(t *testing.T) (dashboard, []panel) {
	t.Helper()
	data, err := os.ReadFile(dashboardPath)
	if err != nil {
		t.Fatal(err)
	}
	var d dashboard
	if err := json.Unmarshal(data, &d); err != nil {
		t.Fatalf("%s: %v", dashboardPath, err)
	}
	var flat []panel
	var walk func([]panel)
	walk = func(ps []panel) {
		for _, p := range ps {
			if p.Type == "row" {
				walk(p.Panels)
				continue
			}
			flat = append(flat, p)
		}
	}
	walk(d.Panels)
	return d, flat
}

func TestGrafanaDashboard(t *testing.T) {
	d, panels := loadDashboard(t)
	if d.UID != "meridian" || d.SchemaVersion != 39 || d.Title == "" {
		t.Errorf("uid %q schemaVersion %d title %q", d.UID, d.SchemaVersion, d.Title)
	}
	// A data source variable: the dashboard works against any Prometheus
	// the viewer picks, without an import-time input.
	if l := d.Templating.List; len(l) == 0 || l[0].Name != "datasource" || l[0].Type != "datasource" || l[0].Query != "prometheus" {
		t.Errorf("templating %+v: want a first variable datasource of type datasource (prometheus)", d.Templating.List)
	}
	if len(panels) == 0 {
		t.Fatal("no panels")
	}
	ids := map[int]bool{}
	for _, p := range panels {
		if p.ID == 0 || ids[p.ID] {
			t.Errorf("panel %q: id %d missing or duplicate", p.Title, p.ID)
		}
		ids[p.ID] = true
		if !strings.Contains(string(p.Datasource), "${datasource}") {
			t.Errorf("panel %q: datasource %s", p.Title, p.Datasource)
		}
		if len(p.Targets) == 0 {
			t.Errorf("panel %q has no target", p.Title)
		}
		for i, tg := range p.Targets {
			if strings.TrimSpace(tg.Expr) == "" {
				t.Errorf("panel %q target %d has no expr", p.Title, i)
			}
		}
	}
	// The status panel names the three states.
	var status *panel
	for i := range panels {
		if panels[i].Type == "stat" && len(panels[i].Targets) > 0 && strings.HasPrefix(panels[i].Targets[0].Expr, "meridian_status") {
			status = &panels[i]
		}
	}
	if status == nil {
		t.Fatal("no stat panel on meridian_status")
	}
	m, _ := json.Marshal(status.FieldConfig)
	for _, s := range []string{`"0":{"color":"red","index":0,"text":"unsynchronized"}`,
		`"1":{"color":"green","index":1,"text":"synchronized"}`, `"2":{"color":"orange","index":2,"text":"holdover"}`} {
		if !strings.Contains(string(m), s) {
			t.Errorf("status mappings lack %s: %s", s, m)
		}
	}
}

var metricNameRe = regexp.MustCompile(`\bmeridian_[a-z0-9_]+`)

// missingMetrics returns, sorted and once each, the meridian_* names in
// exprs that are not exported metrics. known maps metric family names to
// their types (as in "# TYPE name type"); a histogram's series are its name
// with _bucket, _sum and _count appended (a summary's: _sum and _count).
func missingMetrics(known map[string]string, exprs []string) []string {
	exists := func(n string) bool {
		if _, ok := known[n]; ok {
			return true
		}
		for _, suf := range []string{"_bucket", "_sum", "_count"} {
			if base, ok := strings.CutSuffix(n, suf); ok {
				switch known[base] {
				case "histogram":
					return true
				case "summary":
					return suf != "_bucket"
				}
			}
		}
		return false
	}
	var out []string
	for _, e := range exprs {
		for _, n := range metricNameRe.FindAllString(e, -1) {
			if !exists(n) && !slices.Contains(out, n) {
				out = append(out, n)
			}
		}
	}
	sort.Strings(out)
	return out
}

func TestMissingMetricsNegativeControl(t *testing.T) {
	known := map[string]string{
		"meridian_status":                        "gauge",
		"meridian_updates_total":                 "counter",
		"meridian_grpc_request_duration_seconds": "histogram",
		"meridian_rpc_seconds":                   "summary",
	}
	exprs := []string{
		"meridian_status == 0",
		"rate(meridian_updates_total[5m]) > 0 and meridian_does_not_exist > 0",
		`histogram_quantile(0.99, sum by (le) (rate(meridian_grpc_request_duration_seconds_bucket{method="Now"}[5m])))`,
		"meridian_grpc_request_duration_seconds_sum / meridian_grpc_request_duration_seconds_count",
		"meridian_status_bucket",         // a gauge has no buckets
		"meridian_rpc_seconds_bucket",    // nor has a summary
		"meridian_rpc_seconds_count",     // but it has a count
		"meridian_does_not_exist offset", // reported once
	}
	got := missingMetrics(known, exprs)
	want := []string{"meridian_does_not_exist", "meridian_rpc_seconds_bucket", "meridian_status_bucket"}
	if !slices.Equal(got, want) {
		t.Fatalf("missingMetrics = %v, want %v", got, want)
	}
	if got := missingMetrics(known, []string{"meridian_status", "up == 0"}); len(got) != 0 {
		t.Fatalf("false positives: %v", got)
	}
}

// startDaemon runs an in-process meridiand on loopback and temporary files
// until the test ends.
func startDaemon(t *testing.T, edit func(*config.Config)) *daemon.Daemon {
	t.Helper()
	cfg := config.Default()
	cfg.Metrics.Listen = "127.0.0.1:0"
	cfg.NTPServer.Listen = []string{"127.0.0.1:0"}
	testdaemon.TempPaths(t, cfg)
	if edit != nil {
		edit(cfg)
	}
	return testdaemon.Start(t, cfg, daemon.Options{Tick: 50 * time.Millisecond})
}

// scrapeTypes returns the metric families ("# TYPE name type") of a
// daemon's /metrics.
func scrapeTypes(t *testing.T, d *daemon.Daemon, into map[string]string) {
	t.Helper()
	hc := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := hc.Get("http://" + d.MetricsAddr() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("/metrics: %s", resp.Status)
	}
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if f := strings.Fields(sc.Text()); len(f) == 4 && f[0] == "#" && f[1] == "TYPE" {
			into[f[2]] = f[3]
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
}

// Every metric the alerts and the dashboard query is exported by a running
// meridiand. Per-source series exist only once a source has answered, so a
// second daemon (B) polls the first (A, its own reference, with an NTP
// server); the names are the union of both scrapes.
func TestMetricsExistInRunningDaemon(t *testing.T) {
	var exprs []string
	for _, g := range alertRules(t).Groups {
		for _, r := range g.Rules {
			exprs = append(exprs, r.Expr)
		}
	}
	_, panels := loadDashboard(t)
	for _, p := range panels {
		for _, tg := range p.Targets {
			exprs = append(exprs, tg.Expr)
		}
	}
	if len(exprs) < 20 {
		t.Fatalf("only %d expressions", len(exprs))
	}

	a := startDaemon(t, func(c *config.Config) { c.LocalStratum = 10 }) // a local reference: serves itself
	b := startDaemon(t, func(c *config.Config) {
		c.LocalStratum = 0
		c.Sources = []config.Source{{Type: "ntp", Address: a.NTPServerAddr(),
			Poll: config.Duration(250 * time.Millisecond), IBurst: true}}
	})
	deadline := time.Now().Add(20 * time.Second)
	for {
		if _, err := b.Clock().Now(); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("B did not synchronize to A within 20 s")
		}
		time.Sleep(20 * time.Millisecond)
	}
	time.Sleep(200 * time.Millisecond) // a few more updates: per-source gauges set

	known := map[string]string{}
	scrapeTypes(t, a, known)
	scrapeTypes(t, b, known)
	if known["meridian_status"] != "gauge" || known["meridian_source_reach"] == "" {
		t.Fatalf("scrape looks wrong: %v", known)
	}
	if missing := missingMetrics(known, exprs); len(missing) > 0 {
		names := make([]string, 0, len(known))
		for n := range known {
			names = append(names, n)
		}
		sort.Strings(names)
		t.Errorf("metrics used in %s or %s but not exported by meridiand: %v\nexported: %v",
			alertsPath, dashboardPath, missing, names)
	}
}
