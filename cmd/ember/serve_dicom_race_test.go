package main_test

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emberfhir/ember/internal/dicomsamples"
	"github.com/emberfhir/ember/internal/pgtest"
	"github.com/emberfhir/ember/internal/testenv"
)

// TestServeDICOMRacesRESTConditionalCreate (issue 13), end to end: storescu
// pushes a study of a new patient while REST clients POST that patient with
// If-None-Exist: identifier=…, fired as the association ends (when the
// ImagingStudy sync runs). Over several rounds each identifier has exactly
// one Patient, the one the ImagingStudy refers to. The deterministic form
// of this race is dicom's TestSyncRacesRESTConditionalCreate.
func TestServeDICOMRacesRESTConditionalCreate(t *testing.T) {
	testenv.DCMTKTools(t, "storescu", "dcmodify")
	orig, err := dicomsamples.Pydicom(context.Background(), "CT_small.dcm")
	if err != nil {
		t.Fatal(err)
	}
	addr, dimseAddr := freeAddr(t), freeAddr(t)
	startServe(t, []string{"EMBER_DIMSE_ADDR=" + dimseAddr}, addr, "--addr", addr, "--database-url", pgtest.NewDatabase(t),
		"--data-dir", t.TempDir(), "--ae-title", "EMBERTEST")
	host, port, _ := net.SplitHostPort(dimseAddr)
	base := "http://" + addr + "/fhir"
	const rounds, clients = 5, 4
	for round := range rounds {
		pid := fmt.Sprintf("RACE-%d-%d", round, time.Now().UnixNano())
		study := freshUID(t)
		file := filepath.Join(t.TempDir(), "ct.dcm")
		copyFile(t, orig, file)
		if out, err := exec.Command("dcmodify", "-nb", "-i", "(0010,0020)="+pid, "-i", "(0020,000D)="+study,
			"-i", "(0020,000E)="+freshUID(t), "-i", "(0008,0018)="+freshUID(t), file).CombinedOutput(); err != nil {
			t.Fatalf("dcmodify: %v\n%s", err, out)
		}
		store := exec.Command("storescu", "-aec", "EMBERTEST", host, port, file)
		store.Env = append(store.Environ(), "TCP_NODELAY=1")
		if out, err := store.CombinedOutput(); err != nil {
			t.Fatalf("storescu: %v\n%s", err, out)
		}
		// The association has ended: its ImagingStudy sync runs now.
		var wg sync.WaitGroup
		statuses := make([]int, clients)
		for c := range clients {
			wg.Add(1)
			go func() {
				defer wg.Done()
				time.Sleep(time.Duration(c) * 3 * time.Millisecond)
				statuses[c] = postIfNoneExist(base, pid)
			}()
		}
		wg.Wait()
		for c, s := range statuses {
			if s != http.StatusCreated && s != http.StatusOK {
				t.Errorf("round %d: conditional POST %d: status %d", round, c, s)
			}
		}
		var subject string
		for i := 0; i < 100 && subject == ""; i++ {
			subject = imagingStudySubject(base, study)
			if subject == "" {
				sleep()
			}
		}
		if subject == "" {
			t.Fatalf("round %d: no ImagingStudy for study %s", round, study)
		}
		var bundle struct {
			Total int `json:"total"`
			Entry []struct {
				Resource struct{ ID string } `json:"resource"`
			} `json:"entry"`
		}
		getJSON(t, base+"/Patient?identifier=urn:dicom:patient-id|"+pid, &bundle)
		if bundle.Total != 1 || len(bundle.Entry) != 1 {
			t.Errorf("round %d: %d Patients with identifier %s, want 1", round, bundle.Total, pid)
			continue
		}
		if want := "Patient/" + bundle.Entry[0].Resource.ID; subject != want {
			t.Errorf("round %d: ImagingStudy.subject %s, want %s", round, subject, want)
		}
	}
}

// postIfNoneExist POSTs a Patient with the DICOM patient identifier pid,
// conditionally on that identifier, and returns the status (0 on a
// transport error).
func postIfNoneExist(base, pid string) int {
	body := `{"resourceType":"Patient","identifier":[{"system":"urn:dicom:patient-id","value":"` + pid + `"}]}`
	req, err := http.NewRequest(http.MethodPost, base+"/Patient", strings.NewReader(body))
	if err != nil {
		return 0
	}
	req.Header.Set("Content-Type", "application/fhir+json")
	req.Header.Set("If-None-Exist", "identifier=urn:dicom:patient-id|"+pid)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body)
	return resp.StatusCode
}

// imagingStudySubject is the subject reference of the study's ImagingStudy,
// "" while there is none.
func imagingStudySubject(base, study string) string {
	resp, err := http.Get(base + "/ImagingStudy/" + study)
	if err != nil {
		return ""
	}
	defer resp.Body.Close()
	var is struct{ Subject struct{ Reference string } }
	if resp.StatusCode != http.StatusOK || json.NewDecoder(resp.Body).Decode(&is) != nil {
		return ""
	}
	return is.Subject.Reference
}

// freshUID is a new UUID-derived DICOM UID (2.25.<128-bit integer>).
func freshUID(t *testing.T) string {
	t.Helper()
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 128))
	if err != nil {
		t.Fatal(err)
	}
	return "2.25." + n.String()
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	b, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(to, b, 0o644); err != nil {
		t.Fatal(err)
	}
}
