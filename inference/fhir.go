package inference

import (
	"encoding/json"
	"strconv"
	"strings"
	"time"

	"github.com/emberfhir/ember/fhir"
	"github.com/emberfhir/ember/inference/imaging"
	"github.com/emberfhir/ember/inference/model"
)

// Code systems and codes of the resources inference writes.
const (
	// ModelSystem identifies a model's Device by "name|version", and names
	// a model in a ServiceRequest's code (code = the model's name).
	ModelSystem = "urn:ember:model"
	// ModelSHA256System identifies the model file's bytes (hex SHA-256).
	ModelSHA256System = "urn:ember:model-sha256"
	// FailureSystem codes a failed Task's statusReason (the Reason values).
	FailureSystem = "urn:ember:inference-failure"
	// AIDeviceTypeSystem and AIDeviceTypeCode are Device.type for an AI
	// system, as HL7's AI Transparency IG (hl7.fhir.uv.aitransparency,
	// profile AI-Device) codes it.
	AIDeviceTypeSystem = "http://hl7.org/fhir/uv/aitransparency/CodeSystem/AIdeviceTypeCS"
	AIDeviceTypeCode   = "Artificial-Intelligence"
	// securitySystem's AIAST ("Artificial Intelligence asserted") labels
	// what a model asserted (meta.security), and is the Provenance reason.
	securitySystem = "http://terminology.hl7.org/CodeSystem/v3-ObservationValue"
	// RadiologyCategory is DiagnosticReport.category as US Core codes
	// radiology (LOINC LP29684-5).
	radiologySystem = "http://loinc.org"
	radiologyCode   = "LP29684-5"
	ucum            = "http://unitsofmeasure.org"
	// taskCodeText is Task.code's text, what a worklist shows.
	taskCodeText = "AI inference"
)

// Reason is why a job failed: a code of FailureSystem.
type Reason string

// Failure reasons.
const (
	ReasonUndecodable        Reason = "undecodable"          // the chosen instance's pixels cannot be decoded
	ReasonNoMatchingInstance Reason = "no-matching-instance" // no instance with pixels passes the model's filters
	ReasonModelError         Reason = "model-error"          // the model is gone, failed, or gave too few outputs
	ReasonTimeout            Reason = "timeout"              // the job ran out of time on its last attempt
	ReasonStudyGone          Reason = "study-gone"           // the ImagingStudy was deleted
)

// failure is a job's permanent failure: the Task fails with it and River
// does not retry.
type failure struct {
	reason Reason
	text   string
}

func (f *failure) Error() string { return string(f.reason) + ": " + f.text }

func fail(r Reason, text string) *failure { return &failure{reason: r, text: text} }

type obj = map[string]any

func ref(r string) obj { return obj{"reference": r} }

func coding(c model.Coding) obj {
	o := obj{"system": c.System, "code": c.Code}
	if c.Display != "" {
		o["display"] = c.Display
	}
	return o
}

func concept(c model.Coding) obj { return obj{"coding": []any{coding(c)}} }

func aiAsserted() obj {
	return obj{"security": []any{obj{"system": securitySystem, "code": "AIAST", "display": "Artificial Intelligence asserted"}}}
}

// modelID is a model's identity: "name|version".
func modelID(m *model.Model) string { return m.Manifest.Name + "|" + m.Manifest.Version }

// escapeToken escapes a token search value's special characters.
func escapeToken(s string) string {
	return strings.NewReplacer(`\`, `\\`, `,`, `\,`, `|`, `\|`, `$`, `\$`).Replace(s)
}

// deviceJSON is a model's Device (see the package doc for the shape).
func deviceJSON(m *model.Model) ([]byte, error) {
	d := obj{
		"resourceType": "Device",
		"identifier": []any{
			obj{"system": ModelSystem, "value": modelID(m)},
			obj{"system": ModelSHA256System, "value": m.SHA256},
		},
		"status": "active",
		"type": obj{
			"coding": []any{obj{"system": AIDeviceTypeSystem, "code": AIDeviceTypeCode, "display": "Artificial Intelligence"}},
			"text":   "Artificial Intelligence",
		},
		"deviceName": []any{obj{"name": m.Manifest.Name, "type": "model-name"}},
		"version":    []any{obj{"value": m.Manifest.Version}},
	}
	if m.Manifest.Description != "" {
		d["note"] = []any{obj{"text": m.Manifest.Description}}
	}
	return json.Marshal(d)
}

// taskJSON is a new Task, requested, for one model run on a study.
func taskJSON(studyID, subject, deviceID string, m *model.Model, basedOn string, now time.Time) ([]byte, error) {
	t := obj{
		"resourceType": "Task",
		"status":       "requested",
		"intent":       "order",
		"code":         obj{"text": taskCodeText},
		"description":  "Run model " + m.Manifest.Name + " " + m.Manifest.Version + " on ImagingStudy/" + studyID,
		"focus":        ref("ImagingStudy/" + studyID),
		"owner":        obj{"reference": "Device/" + deviceID, "display": m.Manifest.Name + " " + m.Manifest.Version},
		"authoredOn":   fhir.FormatInstant(now),
		"lastModified": fhir.FormatInstant(now),
		"input": []any{obj{
			"type":        obj{"coding": []any{obj{"system": ModelSystem, "code": m.Manifest.Name}}, "text": "model"},
			"valueString": modelID(m),
		}},
	}
	if subject != "" {
		t["for"] = ref(subject)
	}
	if basedOn != "" {
		t["basedOn"] = []any{ref(basedOn)}
	}
	return json.Marshal(t)
}

// withTaskStatus returns the stored Task with a new status (and, for a
// failure, its coded reason; for a completion, its output).
func withTaskStatus(content []byte, status string, f *failure, output string, now time.Time) ([]byte, error) {
	var t obj
	if err := json.Unmarshal(content, &t); err != nil {
		return nil, err
	}
	delete(t, "meta")
	t["status"] = status
	t["lastModified"] = fhir.FormatInstant(now)
	if f != nil {
		t["statusReason"] = obj{
			"coding": []any{obj{"system": FailureSystem, "code": string(f.reason)}},
			"text":   f.text,
		}
	}
	if status == "in-progress" {
		t["executionPeriod"] = obj{"start": fhir.FormatInstant(now)}
	}
	if status == "completed" || status == "failed" {
		if p, ok := t["executionPeriod"].(map[string]any); ok {
			p["end"] = fhir.FormatInstant(now)
		}
	}
	if output != "" {
		t["output"] = []any{obj{
			"type":           obj{"text": "DiagnosticReport"},
			"valueReference": ref(output),
		}}
	}
	return json.Marshal(t)
}

// taskFields are what the runner reads of a stored Task.
type taskFields struct {
	Status  string `json:"status"`
	BasedOn []struct {
		Reference string `json:"reference"`
	} `json:"basedOn"`
}

func (t taskFields) serviceRequest() string {
	for _, b := range t.BasedOn {
		if strings.HasPrefix(b.Reference, "ServiceRequest/") {
			return b.Reference
		}
	}
	return ""
}

// studyFields are what inference reads of an ImagingStudy.
type studyFields struct {
	ID      string `json:"id"`
	Subject struct {
		Reference string `json:"reference"`
	} `json:"subject"`
	BasedOn []struct {
		Reference string `json:"reference"`
	} `json:"basedOn"`
}

// run is one job's outcome, what the findings are written from.
type run struct {
	job      Job
	model    *model.Model
	deviceID string
	subject  string // "Patient/…", or "" when the study has none
	basedOn  string // "ServiceRequest/…", or ""
	findings []model.Finding
	image    imaging.Info
	status   string // the DiagnosticReport's
	now      time.Time
}

func (r *run) observationStatus() string {
	if r.status == "preliminary" || r.status == "registered" || r.status == "partial" {
		return "preliminary"
	}
	return "final"
}

// quantity is a finding's valueQuantity: a probability (no unit, "1" or
// "probability" in the manifest) is UCUM 1; another unit is carried as text.
func quantity(f model.Finding) obj {
	q := obj{"value": f.Value}
	switch f.Unit {
	case "", "1", "probability":
		q["unit"] = "probability"
		q["system"] = ucum
		q["code"] = "1"
	case "%":
		q["unit"] = "%"
		q["system"] = ucum
		q["code"] = "%"
	default:
		q["unit"] = f.Unit
	}
	return q
}

func (r *run) common(typ string) obj {
	o := obj{"resourceType": typ, "meta": aiAsserted()}
	if r.subject != "" {
		o["subject"] = ref(r.subject)
	}
	if r.basedOn != "" {
		o["basedOn"] = []any{ref(r.basedOn)}
	}
	return o
}

func (r *run) observationJSON(f model.Finding) ([]byte, error) {
	o := r.common("Observation")
	o["status"] = r.observationStatus()
	o["category"] = []any{obj{"coding": []any{obj{
		"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "imaging", "display": "Imaging",
	}}}}
	o["code"] = concept(f.Code)
	o["issued"] = fhir.FormatInstant(r.now)
	o["effectiveDateTime"] = fhir.FormatInstant(r.now)
	o["valueQuantity"] = quantity(f)
	if f.Interpretation != nil {
		o["interpretation"] = []any{concept(*f.Interpretation)}
	}
	o["device"] = obj{"reference": "Device/" + r.deviceID, "display": r.model.Manifest.Name + " " + r.model.Manifest.Version}
	o["derivedFrom"] = []any{ref("ImagingStudy/" + r.job.ImagingStudyID)}
	o["note"] = []any{obj{"text": "From instance " + r.image.SOPInstanceUID + " (frame " + strconv.Itoa(r.image.Frame+1) + " of " + strconv.Itoa(r.image.Frames) + ")"}}
	return json.Marshal(o)
}

func (r *run) reportJSON(observations []string) ([]byte, error) {
	rep := r.model.Manifest.Report
	d := r.common("DiagnosticReport")
	d["status"] = r.status
	cats := []any{obj{"coding": []any{obj{"system": radiologySystem, "code": radiologyCode, "display": "Radiology"}}}}
	for _, c := range rep.Category {
		if c.System == radiologySystem && c.Code == radiologyCode {
			continue
		}
		cats = append(cats, concept(c))
	}
	d["category"] = cats
	d["code"] = concept(rep.Code)
	d["effectiveDateTime"] = fhir.FormatInstant(r.now)
	d["issued"] = fhir.FormatInstant(r.now)
	// R4 does not let DiagnosticReport.performer refer to a Device (R5
	// does); the model is named by the Device's identifier instead, a
	// logical reference, while Observation.device and Provenance.agent
	// refer to the Device itself.
	d["performer"] = []any{obj{
		"identifier": obj{"system": ModelSystem, "value": modelID(r.model)},
		"display":    r.model.Manifest.Name + " " + r.model.Manifest.Version + " (Device/" + r.deviceID + ")",
	}}
	d["imagingStudy"] = []any{ref("ImagingStudy/" + r.job.ImagingStudyID)}
	results := make([]any, len(observations))
	for i, o := range observations {
		results[i] = ref(o)
	}
	if len(results) > 0 {
		d["result"] = results
	}
	if rep.Conclusion != "" {
		d["conclusion"] = rep.Conclusion
	}
	var codes []any
	for i, f := range r.findings {
		if th := r.model.Manifest.Findings[i].Threshold; th != nil && f.Value >= *th {
			codes = append(codes, concept(f.Code))
		}
	}
	if len(codes) > 0 {
		d["conclusionCode"] = codes
	}
	return json.Marshal(d)
}

func (r *run) provenanceJSON(targets []string) ([]byte, error) {
	ts := make([]any, len(targets))
	for i, t := range targets {
		ts[i] = ref(t)
	}
	p := obj{
		"resourceType": "Provenance",
		"meta":         aiAsserted(),
		"target":       ts,
		"recorded":     fhir.FormatInstant(r.now),
		"reason":       []any{obj{"coding": []any{obj{"system": securitySystem, "code": "AIAST", "display": "Artificial Intelligence asserted"}}}},
		"agent": []any{obj{
			"type": obj{"coding": []any{obj{
				"system": "http://terminology.hl7.org/CodeSystem/provenance-participant-type", "code": "author", "display": "Author",
			}}},
			"who": obj{"reference": "Device/" + r.deviceID, "display": r.model.Manifest.Name + " " + r.model.Manifest.Version},
		}},
		"entity": []any{obj{"role": "source", "what": ref("ImagingStudy/" + r.job.ImagingStudyID)}},
	}
	if r.basedOn != "" {
		p["entity"] = append(p["entity"].([]any), obj{"role": "source", "what": ref(r.basedOn)})
	}
	return json.Marshal(p)
}
