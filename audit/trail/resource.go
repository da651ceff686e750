package trail

import (
	"encoding/base64"
	"encoding/json"
	"strconv"
	"strings"
	"time"

	"github.com/emberfhir/ember/audit"
)

// TagSystem and TagCode mark the AuditEvents Ember records itself (meta.tag):
// every one of them must have a link in the chain, so one without is
// reported by Verify as written behind the chain's back.
const (
	TagSystem = "https://emberfhir.org/fhir/CodeSystem/audit"
	TagCode   = "ember"
)

// Code systems of the AuditEvent's codings.
const (
	sysEventType   = "http://terminology.hl7.org/CodeSystem/audit-event-type"
	sysRestful     = "http://hl7.org/fhir/restful-interaction"
	sysDCM         = "http://dicom.nema.org/resources/ontology/DCM"
	sysEmber       = "https://emberfhir.org/fhir/CodeSystem/audit-subtype"
	sysEntityType  = "http://terminology.hl7.org/CodeSystem/audit-entity-type"
	sysObjectRole  = "http://terminology.hl7.org/CodeSystem/object-role"
	sysSourceType  = "http://terminology.hl7.org/CodeSystem/security-source-type"
	sysRoleType    = "http://terminology.hl7.org/CodeSystem/extra-security-role-type"
	sysClientID    = "https://emberfhir.org/fhir/sid/oauth-client"
	sysAETitle     = "https://emberfhir.org/fhir/sid/dicom-ae-title"
	sysDICOMUID    = "urn:dicom:uid"
	sysNetworkType = "2" // IP address
)

type coding struct {
	System  string `json:"system,omitempty"`
	Code    string `json:"code"`
	Display string `json:"display,omitempty"`
}

type concept struct {
	Coding []coding `json:"coding,omitempty"`
	Text   string   `json:"text,omitempty"`
}

type identifier struct {
	System string `json:"system,omitempty"`
	Value  string `json:"value"`
}

type reference struct {
	Reference  string      `json:"reference,omitempty"`
	Identifier *identifier `json:"identifier,omitempty"`
	Display    string      `json:"display,omitempty"`
}

type network struct {
	Address string `json:"address"`
	Type    string `json:"type"`
}

type agent struct {
	Type      *concept   `json:"type,omitempty"`
	Role      []concept  `json:"role,omitempty"`
	Who       *reference `json:"who,omitempty"`
	AltID     string     `json:"altId,omitempty"`
	Name      string     `json:"name,omitempty"`
	Requestor bool       `json:"requestor"`
	Network   *network   `json:"network,omitempty"`
}

type entity struct {
	What  *reference `json:"what,omitempty"`
	Type  *coding    `json:"type,omitempty"`
	Role  *coding    `json:"role,omitempty"`
	Query string     `json:"query,omitempty"`
}

type period struct {
	Start string `json:"start"`
	End   string `json:"end"`
}

type source struct {
	Site     string    `json:"site,omitempty"`
	Observer reference `json:"observer"`
	Type     []coding  `json:"type"`
}

type meta struct {
	Tag []coding `json:"tag"`
}

type auditEvent struct {
	ResourceType string   `json:"resourceType"`
	ID           string   `json:"id,omitempty"`
	Meta         meta     `json:"meta"`
	Type         coding   `json:"type"`
	Subtype      []coding `json:"subtype,omitempty"`
	Action       string   `json:"action"`
	Period       *period  `json:"period,omitempty"`
	Recorded     string   `json:"recorded"`
	Outcome      string   `json:"outcome"`
	OutcomeDesc  string   `json:"outcomeDesc,omitempty"`
	Agent        []agent  `json:"agent"`
	Source       source   `json:"source"`
	Entity       []entity `json:"entity,omitempty"`
}

// eventType is AuditEvent.type and the subtype coding for an access.
func eventType(k audit.Kind, subtype string) (coding, coding) {
	switch k {
	case audit.REST:
		return coding{System: sysEventType, Code: "rest", Display: "RESTful Operation"}, coding{System: sysRestful, Code: subtype}
	case audit.DICOMweb, audit.DIMSE:
		switch subtype {
		case "QIDO-RS", "C-FIND":
			return coding{System: sysDCM, Code: "110112", Display: "Query"}, coding{System: sysEmber, Code: subtype}
		case "association":
			return coding{System: sysDCM, Code: "110100", Display: "Application Activity"}, coding{System: sysEmber, Code: subtype}
		}
		return coding{System: sysDCM, Code: "110104", Display: "DICOM Instances Transferred"}, coding{System: sysEmber, Code: subtype}
	case audit.Auth:
		switch subtype {
		case "login":
			return coding{System: sysDCM, Code: "110114", Display: "User Authentication"}, coding{System: sysDCM, Code: "110122", Display: "Login"}
		case "logout":
			return coding{System: sysDCM, Code: "110114", Display: "User Authentication"}, coding{System: sysDCM, Code: "110123", Display: "Logout"}
		}
		return coding{System: sysDCM, Code: "110114", Display: "User Authentication"}, coding{System: sysEmber, Code: subtype}
	}
	return coding{System: sysDCM, Code: "110100", Display: "Application Activity"}, coding{System: sysEmber, Code: subtype}
}

// agents are the AuditEvent.agent entries for who acted: the user (when
// the access had one), the client application, or the anonymous requester.
func agents(a audit.Agent) []agent {
	var out []agent
	var net *network
	if a.Address != "" {
		net = &network{Address: a.Address, Type: sysNetworkType}
	}
	if a.User != "" || (a.Subject != "" && a.Subject != a.Client) {
		u := agent{
			Type:      &concept{Coding: []coding{{System: sysRoleType, Code: "humanuser", Display: "human user"}}},
			AltID:     a.Subject,
			Requestor: true,
		}
		if a.User != "" {
			ref := localRef(a.User) // Ember's tokens carry it absolute
			if ref == "" {
				ref = a.User
			}
			u.Who = &reference{Reference: ref}
		}
		if a.Role != "" {
			u.Role = []concept{{Text: a.Role}}
		}
		if a.Client == "" {
			u.Network = net
		}
		out = append(out, u)
	}
	switch {
	case a.Client != "":
		out = append(out, agent{
			Type:      &concept{Coding: []coding{{System: sysDCM, Code: "110150", Display: "Application"}}},
			Who:       &reference{Identifier: &identifier{System: sysClientID, Value: a.Client}},
			Name:      a.Client,
			Requestor: len(out) == 0,
			Network:   net,
		})
	case a.AETitle != "":
		out = append(out, agent{
			Type:      &concept{Coding: []coding{{System: sysDCM, Code: "110153", Display: "Source Role ID"}}},
			Who:       &reference{Identifier: &identifier{System: sysAETitle, Value: a.AETitle}},
			Name:      a.AETitle,
			Requestor: true,
			Network:   net,
		})
	case len(out) == 0:
		out = append(out, agent{
			Type:      &concept{Coding: []coding{{System: sysDCM, Code: "110153", Display: "Source Role ID"}}},
			Who:       &reference{Display: "anonymous"},
			Requestor: true,
			Network:   net,
		})
	}
	return out
}

// entityOf is the AuditEvent.entity for a reference or a DICOM UID.
func entityOf(ref string) entity {
	if strings.HasPrefix(ref, "urn:oid:") {
		return entity{What: &reference{Identifier: &identifier{System: sysDICOMUID, Value: ref}}, Type: &objectType, Role: &reportRole}
	}
	return entity{What: &reference{Reference: ref}, Type: &objectType, Role: &domainRole}
}

// build is the AuditEvents for a group of accesses: one, or several when
// it touched more than maxEntities patients, resources and queries (each
// event then names its share, under the same who, what and period).
func (g *group) build(site string, recorded time.Time) ([][]byte, error) {
	typ, sub := eventType(g.key.kind, g.key.subtype)
	ev := auditEvent{
		ResourceType: "AuditEvent",
		Meta:         meta{Tag: []coding{{System: TagSystem, Code: TagCode}}},
		Type:         typ,
		Subtype:      []coding{sub},
		Action:       string(rune(g.key.action)),
		Recorded:     fhirInstant(recorded),
		Outcome:      strconv.Itoa(int(g.key.outcome)),
		Agent:        agents(g.key.agent),
		Source: source{
			Site:     site,
			Observer: reference{Display: "Ember"},
			Type:     []coding{{System: sysSourceType, Code: "4", Display: "Application Server"}},
		},
	}
	if g.key.operation != "" {
		ev.Subtype = append(ev.Subtype, coding{System: sysEmber, Code: g.key.operation})
	}
	if g.key.status != 0 {
		ev.OutcomeDesc = statusText(g.key.kind, g.key.status)
	}
	if g.n > 1 || !g.first.Equal(g.last) {
		ev.Period = &period{Start: fhirInstant(g.first), End: fhirInstant(g.last)}
	}
	ents := make([]entity, 0, g.size())
	for _, p := range g.patients {
		ents = append(ents, entity{What: &reference{Reference: p}, Type: &personType, Role: &patientRole})
	}
	for _, ref := range g.entities {
		ents = append(ents, entityOf(ref))
	}
	for _, q := range g.queries {
		ents = append(ents, entity{Type: &objectType, Role: &queryRole, Query: base64.StdEncoding.EncodeToString([]byte(q))})
	}
	var out [][]byte
	for len(out) == 0 || len(ents) > 0 {
		n := min(len(ents), maxEntities)
		ev.Entity = ents[:n]
		ents = ents[n:]
		b, err := json.Marshal(ev)
		if err != nil {
			return nil, err
		}
		out = append(out, b)
	}
	return out, nil
}

// The entity codings (no displays: they would repeat in every entity of a
// large event; the codes are the standard's).
var (
	personType  = coding{System: sysEntityType, Code: "1"}
	objectType  = coding{System: sysEntityType, Code: "2"}
	patientRole = coding{System: sysObjectRole, Code: "1"}
	domainRole  = coding{System: sysObjectRole, Code: "4"}
	reportRole  = coding{System: sysObjectRole, Code: "3"}
	queryRole   = coding{System: sysObjectRole, Code: "24"}
)

func statusText(k audit.Kind, status int) string {
	if k == audit.DIMSE {
		return "DIMSE status 0x" + strconv.FormatUint(uint64(status), 16)
	}
	return "HTTP " + strconv.Itoa(status)
}

// fhirInstant formats t as a FHIR instant in UTC with milliseconds.
func fhirInstant(t time.Time) string {
	return t.UTC().Format("2006-01-02T15:04:05.000Z07:00")
}
