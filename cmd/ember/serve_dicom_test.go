package main_test

import (
	"context"
	"encoding/json"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/emberfhir/ember/internal/dicomsamples"
	"github.com/emberfhir/ember/internal/pgtest"
	"github.com/emberfhir/ember/internal/testenv"
)

// TestServeDICOM: ember serve takes a C-STORE from dcmtk's storescu on
// --dimse-addr and shows the study over DICOMweb and as an ImagingStudy.
func TestServeDICOM(t *testing.T) {
	testenv.DCMTKTools(t, "echoscu", "storescu")
	file, err := dicomsamples.Pydicom(context.Background(), "CT_small.dcm")
	if err != nil {
		t.Fatal(err)
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

// TestServeDICOMAccessDefaults (issue 11, finding 8): a DIMSE listener
// beyond loopback is refused at startup unless --ae-allow names who may
// associate ('*' admits any AE); --ae-allow grants store and find per AE,
// and a store beyond them is refused with 0x0124 while the AE may still
// query.
func TestServeDICOMAccessDefaults(t *testing.T) {
	testenv.DCMTKTools(t, "echoscu", "storescu", "findscu")
	db := pgtest.NewDatabase(t)
	_, port, _ := net.SplitHostPort(freeAddr(t))
	for _, c := range []struct {
		env  []string
		want string
	}{
		{[]string{"EMBER_DIMSE_ADDR=0.0.0.0:" + port}, "--ae-allow"},
		{[]string{"EMBER_DIMSE_ADDR=:" + port}, "--ae-allow"},
		{[]string{"EMBER_DIMSE_ADDR=127.0.0.1:" + port, "EMBER_AE_ALLOW=PACS:write"}, "unknown permission"},
		{[]string{"EMBER_DIMSE_ADDR=127.0.0.1:" + port, "EMBER_DICOM_OVERWRITE=sometimes"}, "--dicom-overwrite"},
	} {
		ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
		cmd := exec.CommandContext(ctx, emberBin, "serve", "--addr", freeAddr(t), "--database-url", db, "--data-dir", t.TempDir())
		cmd.Env = append(append(os.Environ(), "EMBER_AUTH=none"), c.env...)
		out, err := cmd.CombinedOutput()
		timedOut := ctx.Err() != nil // still serving: the old, open default
		cancel()
		if err == nil || timedOut || !strings.Contains(string(out), c.want) {
			t.Errorf("%v: %v, output %s; want a startup error naming %s", c.env, err, out, c.want)
		}
	}

	// '*' opts in to any AE on every interface.
	addr := freeAddr(t)
	_, port, _ = net.SplitHostPort(freeAddr(t))
	startServe(t, []string{"EMBER_DIMSE_ADDR=0.0.0.0:" + port, "EMBER_AE_ALLOW=*"}, addr, "--addr", addr, "--database-url", db,
		"--data-dir", t.TempDir(), "--ae-title", "EMBERTEST")
	if out, err := exec.Command("echoscu", "-aet", "ANYONE", "-aec", "EMBERTEST", "127.0.0.1", port).CombinedOutput(); err != nil {
		t.Errorf("echoscu with --ae-allow '*': %v\n%s", err, out)
	}

	file, err := dicomsamples.Pydicom(context.Background(), "CT_small.dcm")
	if err != nil {
		t.Fatal(err)
	}
	addr, dimseAddr := freeAddr(t), freeAddr(t)
	startServe(t, []string{"EMBER_DIMSE_ADDR=" + dimseAddr, "EMBER_AE_ALLOW=VIEWER:find,MODALITY:store"}, addr, "--addr", addr,
		"--database-url", pgtest.NewDatabase(t), "--data-dir", t.TempDir(), "--ae-title", "EMBERTEST")
	host, port, _ := net.SplitHostPort(dimseAddr)
	storeAs := func(ae string) string {
		out, _ := exec.Command("storescu", "-v", "-aet", ae, "-aec", "EMBERTEST", host, port, file).CombinedOutput()
		return string(out)
	}
	findAs := func(ae string) string {
		out, _ := exec.Command("findscu", "-v", "-aet", ae, "-aec", "EMBERTEST", "-S", "-k", "QueryRetrieveLevel=STUDY",
			"-k", "PatientName", host, port).CombinedOutput()
		return string(out)
	}
	if out := storeAs("VIEWER"); !strings.Contains(out, "0x124") {
		t.Errorf("storescu as VIEWER (find only): %s, want status 0x0124", out)
	}
	if out := storeAs("STRANGER"); !strings.Contains(out, "Calling AE Title Not Recognized") {
		t.Errorf("storescu as an unlisted AE: %s", out)
	}
	var studies []map[string]any
	if getJSON(t, "http://"+addr+"/dicomweb/studies", &studies); len(studies) != 0 {
		t.Fatalf("refused stores stored %d studies", len(studies))
	}
	if out := findAs("MODALITY"); !strings.Contains(out, "0x124") {
		t.Errorf("findscu as MODALITY (store only): %s, want status 0x0124", out)
	}
	if out := storeAs("MODALITY"); !strings.Contains(out, "Success") {
		t.Errorf("storescu as MODALITY: %s", out)
	}
	if out := findAs("VIEWER"); !strings.Contains(out, "Received Final Find Response (Success)") {
		t.Errorf("findscu as VIEWER: %s", out)
	}
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
