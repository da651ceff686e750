package dimse

import (
	"net"
	"path/filepath"
	"strings"
	"testing"
)

func TestParseAEPolicy(t *testing.T) {
	for _, c := range []struct {
		in   string
		want AEPolicy
	}{
		{"", nil},
		{" , ", nil},
		{"PACS1", AEPolicy{"PACS1": PermAll}},
		{"PACS1:store+find,MODALITY:store", AEPolicy{"PACS1": PermAll, "MODALITY": PermStore}},
		{"VIEWER:find, PING:echo", AEPolicy{"VIEWER": PermFind, "PING": 0}},
		{"A:Store + FIND", AEPolicy{"A": PermAll}},
		{"A:all,B:echo+store", AEPolicy{"A": PermAll, "B": PermStore}},
		{"*", AEPolicy{AnyAE: PermAll}},
		{"PACS1,*:find", AEPolicy{"PACS1": PermAll, AnyAE: PermFind}},
		{"A,A", AEPolicy{"A": PermAll}},
		{"MY AE:store", AEPolicy{"MY AE": PermStore}},
	} {
		got, err := ParseAEPolicy(c.in)
		if err != nil || len(got) != len(c.want) || (got == nil) != (c.want == nil) {
			t.Errorf("%q: %v %v, want %v", c.in, got, err, c.want)
			continue
		}
		for k, v := range c.want {
			if g, ok := got[k]; !ok || g != v {
				t.Errorf("%q: %q is %v, want %v", c.in, k, g, v)
			}
		}
	}
	for _, bad := range []string{"A:write", "A:", "A:store,A:find", "WAY_TOO_LONG_AE_TITLE", ":store", "A\\B", "A\x01", "ÄE"} {
		if p, err := ParseAEPolicy(bad); err == nil {
			t.Errorf("%q: accepted as %v", bad, p)
		}
	}
	// Lookup: listed AEs, then *, else refused.
	p, _ := ParseAEPolicy("PACS1,*:find")
	if v, ok := p.lookup("PACS1"); !ok || v != PermAll {
		t.Errorf("PACS1: %v %v", v, ok)
	}
	if v, ok := p.lookup("OTHER"); !ok || v != PermFind {
		t.Errorf("OTHER: %v %v", v, ok)
	}
	p, _ = ParseAEPolicy("PACS1")
	if _, ok := p.lookup("OTHER"); ok {
		t.Error("OTHER admitted by a list without *")
	}
	if v, ok := AEPolicy(nil).lookup("ANY"); !ok || v != PermAll {
		t.Errorf("nil policy: %v %v", v, ok)
	}
	if _, err := NewServer(Config{Handler: newTestHandler(t), Policy: p, AllowedCallingAEs: []string{"X"}}); err == nil {
		t.Error("Policy and AllowedCallingAEs both accepted")
	}
}

// Finding 8: each calling AE may do what its policy entry says. A C-STORE
// or C-FIND beyond it is answered 0x0124 (Refused: Not Authorized) and
// never reaches the handler; the association goes on.
func TestAEPermissions(t *testing.T) {
	file := filepath.Join(pydicomSamples(t), "CT_small.dcm")
	policy, err := ParseAEPolicy("STORER:store,FINDER:find,BOTH,PING:echo,*:find")
	if err != nil {
		t.Fatal(err)
	}
	addr, h, _ := startServer(t, Config{AETitle: "EMBER", Policy: policy})
	stores := func() int {
		h.mu.Lock()
		defer h.mu.Unlock()
		return len(h.stores)
	}
	finds := func() int {
		h.mu.Lock()
		defer h.mu.Unlock()
		return len(h.finds)
	}
	find := func(ae string) (string, bool) {
		return dcmtk(t, addr, "findscu", []string{"-v", "-aet", ae, "-aec", "EMBER", "-S", "-k", "QueryRetrieveLevel=STUDY", "-k", "PatientID"})
	}
	store := func(ae string) (string, bool) {
		return dcmtk(t, addr, "storescu", []string{"-v", "-aet", ae, "-aec", "EMBER"}, file)
	}
	// dcmtk prints 0x0124 (a general status, PS3.7 C.5) as "Unknown
	// Status: 0x124": it names only each service's own statuses.
	for _, ae := range []string{"FINDER", "PING", "NOBODY"} {
		out, _ := store(ae)
		if stores() != 0 || !strings.Contains(out, "Status: 0x124") {
			t.Errorf("storescu as %s: %d stored, output %s", ae, stores(), out)
		}
	}
	for _, ae := range []string{"STORER", "PING"} {
		out, _ := find(ae)
		if finds() != 0 || !strings.Contains(out, "Status: 0x124") {
			t.Errorf("findscu as %s: %d finds, output %s", ae, finds(), out)
		}
	}
	for _, ae := range []string{"PING", "STORER", "NOBODY"} {
		if out, ok := dcmtk(t, addr, "echoscu", []string{"-aet", ae, "-aec", "EMBER"}); !ok {
			t.Errorf("echoscu as %s: %s", ae, out)
		}
	}
	if out, ok := store("STORER"); !ok || stores() != 1 {
		t.Errorf("storescu as STORER: %d stored, %s", stores(), out)
	}
	if out, ok := store("BOTH"); !ok || stores() != 1 { // same instance and syntax: same key
		t.Errorf("storescu as BOTH: %s", out)
	}
	for i, ae := range []string{"FINDER", "BOTH", "NOBODY"} {
		if out, ok := find(ae); !ok || finds() != i+1 {
			t.Errorf("findscu as %s: %d finds, %s", ae, finds(), out)
		}
	}
	// Without "*", an unlisted AE cannot associate at all.
	policy, _ = ParseAEPolicy("STORER:store")
	addr2, _, _ := startServer(t, Config{AETitle: "EMBER", Policy: policy})
	if out, ok := dcmtk(t, addr2, "echoscu", []string{"-aet", "NOBODY", "-aec", "EMBER"}); ok || !strings.Contains(out, "Calling AE Title Not Recognized") {
		t.Errorf("unlisted AE: ok=%v %s", ok, out)
	}
}

// Finding 15: an A-ASSOCIATE-RQ proposing one presentation context id
// twice is aborted, not accepted.
func TestDuplicateContextIDs(t *testing.T) {
	addr, _, _ := startServer(t, Config{})
	rq := buildAssociateRQ("EMBER", "TESTSCU", 16384, []pcProposal{
		{id: 1, abstract: uidVerification, ts: []string{tsImplicitLE}},
		{id: 3, abstract: uidCTImage, ts: []string{tsExplicitLE}},
		{id: 1, abstract: uidStudyRootFind, ts: []string{tsImplicitLE}},
	})
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Write(rq); err != nil {
		t.Fatal(err)
	}
	expectAbort(t, c)
}
