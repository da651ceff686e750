package server_test

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"testing"

	"github.com/emberfhir/ember/server"
)

// TestExportFileRange: an output file is served whole or as one byte
// range (206 with Content-Range), other Range forms get the whole file, a
// range past the end is 416; HEAD has the headers only; methods other than
// GET and HEAD are 405.
func TestExportFileRange(t *testing.T) {
	e := newBulkEnv(t, "")
	for i := range 30 {
		body := fmt.Sprintf(`{"resourceType":"Patient","id":"range-%d","gender":"female"}`, i)
		expect(t, e.do("PUT", fmt.Sprintf("/Patient/range-%d", i), []byte(body)), http.StatusCreated)
	}
	m := e.wait(e.kickoff("/$export?_type=Patient"))
	if len(m.Output) != 1 {
		t.Fatalf("manifest output %+v", m.Output)
	}
	fileURL := m.Output[0].URL
	r := e.do("GET", fileURL, nil)
	expect(t, r, http.StatusOK)
	whole, size := r.body, int64(len(r.body))
	if r.header.Get("Accept-Ranges") != "bytes" || r.header.Get("Content-Length") != strconv.FormatInt(size, 10) {
		t.Fatalf("whole file headers: %v", r.header)
	}
	for _, tc := range []struct {
		rng    string
		status int
		body   []byte
	}{
		{"bytes=-10", http.StatusPartialContent, whole[size-10:]},
		{"bytes=5-", http.StatusPartialContent, whole[5:]},
		{fmt.Sprintf("bytes=%d-%d", size/3, 2*size/3), http.StatusPartialContent, whole[size/3 : 2*size/3+1]},
		{fmt.Sprintf("bytes=0-%d", size+100), http.StatusPartialContent, whole},
		{"bytes=0-1,5-6", http.StatusOK, whole},
		{"lines=1-2", http.StatusOK, whole},
		{fmt.Sprintf("bytes=%d-", size), http.StatusRequestedRangeNotSatisfiable, nil},
	} {
		r := e.do("GET", fileURL, nil, "Range: "+tc.rng)
		if r.status != tc.status || tc.body != nil && !bytes.Equal(r.body, tc.body) {
			t.Errorf("Range %s: %d, %d bytes; want %d, %d bytes", tc.rng, r.status, len(r.body), tc.status, len(tc.body))
		}
		if tc.body != nil && r.header.Get("Content-Length") != strconv.Itoa(len(tc.body)) {
			t.Errorf("Range %s: Content-Length %s, want %d", tc.rng, r.header.Get("Content-Length"), len(tc.body))
		}
		if tc.status == http.StatusRequestedRangeNotSatisfiable && r.header.Get("Content-Range") != "bytes */"+strconv.FormatInt(size, 10) {
			t.Errorf("Range %s: Content-Range %q", tc.rng, r.header.Get("Content-Range"))
		}
	}
	// A conditional range gets the whole file.
	r = e.do("GET", fileURL, nil, "Range: bytes=0-9", `If-Range: "x"`)
	if r.status != http.StatusOK || !bytes.Equal(r.body, whole) {
		t.Errorf("If-Range: %d, %d bytes", r.status, len(r.body))
	}
	r = e.do("HEAD", fileURL, nil)
	if r.status != http.StatusOK || len(r.body) != 0 || r.header.Get("Content-Length") != strconv.FormatInt(size, 10) {
		t.Errorf("HEAD: %d, %d bytes, %v", r.status, len(r.body), r.header)
	}
	r = e.do("POST", fileURL, nil)
	if r.status != http.StatusMethodNotAllowed || r.header.Get("Allow") != "GET" {
		t.Errorf("POST of a file: %d, Allow %q", r.status, r.header.Get("Allow"))
	}
	status := e.url + "/$export-status/" + strings.Split(strings.TrimPrefix(fileURL, e.url+"/$export-file/"), "/")[0]
	r = e.do("PUT", status, nil)
	if r.status != http.StatusMethodNotAllowed || r.header.Get("Allow") != "GET, DELETE" {
		t.Errorf("PUT of a status URL: %d, Allow %q", r.status, r.header.Get("Allow"))
	}
	expectOutcome(t, e.do("GET", strings.TrimSuffix(fileURL, ".ndjson")+"-nope.ndjson", nil), http.StatusNotFound)
}

// TestExportFailedStatus: a failed export's status is a 500 that says why.
func TestExportFailedStatus(t *testing.T) {
	e := newBulkEnv(t, "", func(c *server.Config) { c.ExportWorkers = -1 })
	status := e.kickoff("/$export")
	id := status[strings.LastIndex(status, "/")+1:]
	if _, err := e.db.Exec(context.Background(), `UPDATE bulk_exports SET status = 'failed', error = 'the nonsense parameter', finished_at = now() WHERE id = $1`, id); err != nil {
		t.Fatal(err)
	}
	r := e.do("GET", status, nil)
	if r.status != http.StatusInternalServerError || !strings.Contains(string(r.body), "export failed: the nonsense parameter") {
		t.Fatalf("failed export status: %d %s", r.status, r.body)
	}
}

// TestExportDisabled: without BulkExport the status and file URLs are not
// found and $export is not an operation.
func TestExportDisabled(t *testing.T) {
	e := newBulkEnv(t, "", func(c *server.Config) { c.BulkExport = false })
	expectOutcome(t, e.do("GET", "/$export", nil, "Prefer: respond-async"), http.StatusNotFound)
	expectOutcome(t, e.do("GET", "/$export-status/0190b7e4-0000-7000-8000-000000000000", nil), http.StatusNotFound)
	expectOutcome(t, e.do("GET", "/$export-file/0190b7e4-0000-7000-8000-000000000000/Patient-1.ndjson", nil), http.StatusNotFound)
}
