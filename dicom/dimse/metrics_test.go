package dimse

import (
	"net"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// TestAssociationMetrics: each way an association ends is counted under
// its result, on the registry given in Config.Metrics.
func TestAssociationMetrics(t *testing.T) {
	reg := prometheus.NewRegistry()
	addr, _, _ := startServer(t, Config{AETitle: "EMBER", AllowedCallingAEs: []string{"GOODSCU"}, Metrics: reg})

	// released
	s, _ := dialSCU(t, addr, "GOODSCU", pcs(uidCTImage))
	s.release()
	// rejected: a calling AE not on the list
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	c.Write(buildAssociateRQ("EMBER", "BADSCU", 1<<20, pcs(uidCTImage)))
	expectAbortOrReject(t, c)
	// aborted: associated, then A-ABORT
	s, _ = dialSCU(t, addr, "GOODSCU", pcs(uidCTImage))
	s.c.Write([]byte{pduAbort, 0, 0, 0, 0, 4, 0, 0, 0, 0})
	s.c.Close()
	// no_request: connected and closed
	c, err = net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	c.Close()

	want := map[string]float64{resultReleased: 1, resultRejected: 1, resultAborted: 1, resultNoRequest: 1}
	var got map[string]float64
	for deadline := time.Now().Add(10 * time.Second); ; {
		got = associationCounts(t, reg)
		if len(got) == len(want) && got[resultReleased] == 1 && got[resultRejected] == 1 && got[resultAborted] == 1 && got[resultNoRequest] == 1 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("associations by result %v, want %v", got, want)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// expectAbortOrReject reads until the server closes the connection.
func expectAbortOrReject(t *testing.T, c net.Conn) {
	t.Helper()
	defer c.Close()
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 256)
	for {
		if _, err := c.Read(buf); err != nil {
			return
		}
	}
}

func associationCounts(t *testing.T, reg *prometheus.Registry) map[string]float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]float64{}
	for _, mf := range mfs {
		if mf.GetName() != "ember_dicom_associations_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "result" {
					out[l.GetValue()] = m.GetCounter().GetValue()
				}
			}
		}
	}
	return out
}
