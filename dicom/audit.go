package dicom

import (
	"context"
	"sort"
	"strconv"
	"strings"

	"github.com/emberfhir/ember/audit"
	"github.com/emberfhir/ember/dicom/dimse"
)

// AuditedHandler records every C-STORE and C-FIND that h answers for the
// audit trail: the calling AE and its address, the instance stored or the
// query (with names and patient IDs redacted), the DIMSE status.
func AuditedHandler(h dimse.Handler, rec audit.Recorder) dimse.Handler {
	if rec == nil {
		return h
	}
	return auditedHandler{h: h, rec: rec}
}

type auditedHandler struct {
	h   dimse.Handler
	rec audit.Recorder
}

func (a auditedHandler) CStore(ctx context.Context, req *dimse.StoreRequest) (uint16, error) {
	status, err := a.h.CStore(ctx, req)
	var ents []string
	if req.SOPInstanceUID != "" {
		ents = []string{"urn:oid:" + req.SOPInstanceUID}
	}
	a.rec.Record(audit.Event{Kind: audit.DIMSE, Subtype: "C-STORE", Action: audit.Create, Outcome: dimseOutcome(status, err),
		Status: int(status), Agent: dimseAgent(req.CallingAE, req.RemoteAddr), Entities: ents})
	return status, err
}

func (a auditedHandler) CFind(ctx context.Context, req *dimse.FindRequest, emit func(dimse.FindMatch) error) (uint16, error) {
	status, err := a.h.CFind(ctx, req, emit)
	a.rec.Record(audit.Event{Kind: audit.DIMSE, Subtype: "C-FIND", Action: audit.Execute, Outcome: dimseOutcome(status, err),
		Status: int(status), Agent: dimseAgent(req.CallingAE, req.RemoteAddr), Query: redactFind(req)})
	return status, err
}

// AuditAssociation records an association's end (C-ECHO, and refused or
// aborted associations, have no other trace).
func AuditAssociation(rec audit.Recorder, st dimse.AssociationStats) {
	if rec == nil {
		return
	}
	out := audit.Success
	if st.Err != nil {
		out = audit.MinorFailure
	}
	rec.Record(audit.Event{Kind: audit.DIMSE, Subtype: "association", Action: audit.Execute, Outcome: out,
		Agent: dimseAgent(st.CallingAE, st.RemoteAddr)})
}

func dimseAgent(ae, addr string) audit.Agent {
	return audit.Agent{AETitle: strings.TrimSpace(ae), Address: audit.RemoteHost(addr)}
}

func dimseOutcome(status uint16, err error) audit.Outcome {
	switch {
	case err != nil || status&0xF000 == 0xC000 || status&0xFF00 == 0xA700 || status&0xFF00 == 0xA900 || status == 0x0110 || status == 0x0122 || status == 0x0124 || status == 0x0211:
		return audit.MinorFailure
	}
	return audit.Success
}

// keptFindTags are C-FIND keys whose values identify no person: UIDs,
// dates, times, modalities, accession-free study attributes.
var keptFindTags = map[uint32]bool{
	0x0020000D: true, 0x0020000E: true, 0x00080018: true, 0x00080016: true,
	0x00080020: true, 0x00080030: true, 0x00080060: true, 0x00080061: true,
}

// redactFind is a C-FIND identifier as "level=STUDY&0020000D=1.2.3&00100010=*".
func redactFind(req *dimse.FindRequest) string {
	tags := make([]uint32, 0, len(req.Keys))
	for t := range req.Keys {
		tags = append(tags, t)
	}
	sort.Slice(tags, func(i, j int) bool { return tags[i] < tags[j] })
	var b strings.Builder
	b.WriteString("level=" + req.Level)
	for _, t := range tags {
		v := req.Keys[t]
		if v != "" && !keptFindTags[t] {
			v = audit.Redacted
		}
		b.WriteString("&" + strings.ToUpper(strconv.FormatUint(uint64(t)|1<<32, 16)[1:]) + "=" + v)
	}
	return b.String()
}
