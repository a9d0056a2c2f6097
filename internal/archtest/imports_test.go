package archtest

// Transitive import rules (go list -deps): pure cores never import sockets,
// timestamping, gRPC, the simulator or the daemon.

import (
	"os/exec"
	"strings"
	"testing"
)

const mod = "github.com/meridiantime/meridian/"

func deps(t *testing.T, pkg string) []string {
	t.Helper()
	out, err := exec.Command("go", "list", "-deps", "-f", "{{.ImportPath}}", mod+pkg).Output()
	if err != nil {
		t.Fatalf("go list %s: %v", pkg, err)
	}
	return strings.Fields(string(out))
}

func TestPureCores(t *testing.T) {
	forbidden := []string{"net", "net/http", "os/exec", "google.golang.org/grpc", mod + "hwts", mod + "sim", mod + "daemon", mod + "cmd", mod + "discipline"}
	for _, pkg := range []string{"discipline", "truetime", "hlc"} {
		for _, d := range deps(t, pkg) {
			for _, f := range forbidden {
				if pkg == "discipline" && f == mod+"discipline" {
					continue
				}
				if d == f || strings.HasPrefix(d, f+"/") {
					t.Errorf("%s imports %s", pkg, d)
				}
			}
		}
	}
}

// The gRPC service and the client library serve and read TrueTime; they
// never reach into the daemon, the protocols or the discipline.
func TestServiceLayers(t *testing.T) {
	forbidden := []string{mod + "daemon", mod + "ntp", mod + "discipline", mod + "hwts", mod + "sim", mod + "cmd"}
	for _, pkg := range []string{"timeservice", "client"} {
		for _, d := range deps(t, pkg) {
			for _, f := range forbidden {
				if d == f || strings.HasPrefix(d, f+"/") {
					t.Errorf("%s imports %s", pkg, d)
				}
			}
		}
	}
}

// Negative control: the checker does see a forbidden import where there is
// one (the simulator imports the discipline).
func TestImportCheckSeesImports(t *testing.T) {
	found := false
	for _, d := range deps(t, "sim") {
		if d == mod+"discipline" {
			found = true
		}
	}
	if !found {
		t.Fatal("go list -deps of sim does not list discipline: the import check is blind")
	}
}
