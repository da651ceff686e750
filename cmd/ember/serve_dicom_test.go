package main_test

import (
	"context"
	"encoding/json"
	"net"
	"net/http"
	"os/exec"
	"testing"
	"time"

	"github.com/emberfhir/ember/internal/dicomsamples"
	"github.com/emberfhir/ember/internal/pgtest"
)

// TestServeDICOM: ember serve takes a C-STORE from dcmtk's storescu on
// --dimse-addr and shows the study over DICOMweb and as an ImagingStudy.
func TestServeDICOM(t *testing.T) {
	for _, tool := range []string{"echoscu", "storescu"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s not installed (apt-get install dcmtk)", tool)
		}
	}
	file, err := dicomsamples.Pydicom(context.Background(), "CT_small.dcm")
	if err != nil {
		t.Skipf("DICOM samples: %v", err)
	}
	addr, dimseAddr := freeAddr(t), freeAddr(t)
	startServe(t, []string{"EMBER_DIMSE_ADDR=" + dimseAddr}, addr, "--addr", addr, "--database-url", pgtest.NewDatabase(t),
		"--data-dir", t.TempDir(), "--ae-title", "EMBERTEST")
	host, port, _ := net.SplitHostPort(dimseAddr)
	if out, err := exec.Command("echoscu", "-aec", "EMBERTEST", host, port).CombinedOutput(); err != nil {
		t.Fatalf("echoscu: %v\n%s", err, out)
	}
	if out, err := exec.Command("echoscu", "-aec", "WRONG", host, port).CombinedOutput(); err == nil {
		t.Errorf("echoscu to a wrong called AE title succeeded:\n%s", out)
	}
	store := exec.Command("storescu", "-aec", "EMBERTEST", host, port, file)
	store.Env = append(store.Environ(), "TCP_NODELAY=1")
	if out, err := store.CombinedOutput(); err != nil {
		t.Fatalf("storescu: %v\n%s", err, out)
	}
	var studies []map[string]any
	getJSON(t, "http://"+addr+"/dicomweb/studies", &studies)
	if len(studies) != 1 {
		t.Fatalf("QIDO /studies: %d studies, want 1", len(studies))
	}
	// The ImagingStudy is written shortly after the association ends.
	var bundle struct {
		Total int `json:"total"`
	}
	for i := 0; i < 50; i++ {
		getJSON(t, "http://"+addr+"/fhir/ImagingStudy?_summary=count", &bundle)
		if bundle.Total == 1 {
			return
		}
		sleep()
	}
	t.Errorf("no ImagingStudy after the C-STORE (total %d)", bundle.Total)
}

func getJSON(t *testing.T, url string, v any) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %d", url, resp.StatusCode)
	}
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
}

func sleep() { time.Sleep(100 * time.Millisecond) }
