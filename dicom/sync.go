package dicom

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"regexp"
	"sort"
	"strings"
	"time"

	"github.com/emberfhir/ember/engine"
	"github.com/emberfhir/ember/fhir"
	"github.com/emberfhir/ember/fhir/search"
	"github.com/emberfhir/ember/store"
	"github.com/emberfhir/ember/store/dicomdb"
)

// maxSyncWait bounds how long a steady stream of instances can postpone
// its study's ImagingStudy: a long transfer still shows progress.
const maxSyncWait = 5 * time.Second

// pendingSync is a study's debounce timer.
type pendingSync struct {
	timer *time.Timer
	first time.Time // when the oldest unsynced instance arrived
}

// scheduleSync (re)starts the study's debounce timer: a burst of instances
// becomes one ImagingStudy version, written SyncDelay after the last one
// (or maxSyncWait after the first).
func (s *Service) scheduleSync(studyUID string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return
	}
	if p, ok := s.timers[studyUID]; ok {
		if time.Since(p.first) < maxSyncWait {
			p.timer.Reset(s.cfg.SyncDelay)
		}
		return
	}
	s.timers[studyUID] = &pendingSync{first: time.Now(), timer: time.AfterFunc(s.cfg.SyncDelay, func() {
		s.mu.Lock()
		delete(s.timers, studyUID)
		if s.closed {
			s.mu.Unlock()
			return
		}
		s.syncWG.Add(1)
		s.mu.Unlock()
		defer s.syncWG.Done()
		ctx, cancel := context.WithTimeout(s.baseCtx, time.Minute)
		defer cancel()
		if err := s.Sync(ctx, studyUID); err != nil {
			s.log.Error("dicom: ImagingStudy sync", "study", studyUID, "err", err)
		}
	})}
}

// SyncPending writes the ImagingStudy of every study waiting on its
// debounce timer now, e.g. when an association is released.
func (s *Service) SyncPending(ctx context.Context) error {
	s.mu.Lock()
	var uids []string
	for uid, p := range s.timers {
		p.timer.Stop()
		delete(s.timers, uid)
		uids = append(uids, uid)
	}
	s.mu.Unlock()
	var errs []error
	for _, uid := range uids {
		if err := s.Sync(ctx, uid); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// Flush syncs every study whose ImagingStudy is behind its instances (also
// those left stale by a crash), waiting for the writes.
func (s *Service) Flush(ctx context.Context) error {
	uids, err := s.db.StaleStudies(ctx)
	if err != nil {
		return fmt.Errorf("dicom: flush: %w", err)
	}
	var errs []error
	for _, uid := range uids {
		s.mu.Lock()
		if p, ok := s.timers[uid]; ok {
			p.timer.Stop()
			delete(s.timers, uid)
		}
		s.mu.Unlock()
		if err := s.Sync(ctx, uid); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// ImagingStudyID is the id of a study's ImagingStudy: the Study Instance
// UID itself, which always fits FHIR's id syntax (digits and dots, ≤ 64).
func ImagingStudyID(studyUID string) string { return studyUID }

// Sync rebuilds the study's ImagingStudy from the metadata tables and writes
// it through the engine, when instances arrived since the last sync. The
// study rows, the Patient, the Endpoint and the ImagingStudy are one
// engine transaction: the Patient and Endpoint are the engine's
// conditional creates, so a REST conditional create of the same patient
// (If-None-Exist: identifier=system|value) waits on the same lock and one
// Patient results.
func (s *Service) Sync(ctx context.Context, studyUID string) error {
	// engine.System: the ImagingStudy is derived data the server
	// maintains; the request that stored the instance was already
	// authorised for that.
	wrote := false
	err := s.eng.InTx(ctx, engine.System, func(tx *engine.Tx) error {
		// FOR UPDATE waits for ingests of this study in flight (they hold
		// FOR SHARE) and serialises syncs of one study.
		st, err := s.db.LockStudy(ctx, tx.StoreTx(), studyUID)
		if errors.Is(err, dicomdb.ErrNotFound) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("dicom: sync %s: %w", studyUID, err)
		}
		if !st.Stale() {
			return nil
		}
		body, err := s.buildImagingStudy(ctx, tx, st)
		if err != nil {
			return err
		}
		r, err := s.eng.Parser().Parse(body, "ImagingStudy")
		if err != nil {
			return fmt.Errorf("dicom: ImagingStudy for %s does not validate: %w", studyUID, err)
		}
		if _, err := tx.Update(engine.UpdateRequest{Resource: r, ID: ImagingStudyID(studyUID)}); err != nil {
			return fmt.Errorf("dicom: write ImagingStudy %s: %w", studyUID, err)
		}
		if err := s.db.MarkSynced(ctx, tx.StoreTx(), studyUID, st.MaxSeq); err != nil {
			return fmt.Errorf("dicom: sync %s: %w", studyUID, err)
		}
		wrote = true
		return nil
	})
	// After the commit: whoever listens (inference's quiet-study trigger)
	// must see the new ImagingStudy.
	if err == nil && wrote && s.cfg.OnStudySynced != nil {
		s.cfg.OnStudySynced(studyUID)
	}
	return err
}

const (
	dcmSystem      = "http://dicom.nema.org/resources/ontology/DCM"
	studyUIDSystem = "urn:dicom:uid"
)

type obj = map[string]any

func (s *Service) buildImagingStudy(ctx context.Context, tx *engine.Tx, st *dicomdb.LockedStudy) ([]byte, error) {
	patientRef, err := s.patient(ctx, tx, st)
	if err != nil {
		return nil, err
	}
	is := obj{
		"resourceType": "ImagingStudy",
		"id":           ImagingStudyID(st.UID),
		"status":       "available",
		"subject":      obj{"reference": patientRef},
	}
	ids := []any{obj{"system": studyUIDSystem, "value": "urn:oid:" + st.UID}}
	if st.Accession != "" {
		ids = append(ids, obj{
			"type":  obj{"coding": []any{obj{"system": "http://terminology.hl7.org/CodeSystem/v2-0203", "code": "ACSN"}}},
			"value": st.Accession,
		})
		if ref, err := s.serviceRequest(ctx, tx.StoreTx(), st.Accession); err != nil {
			return nil, err
		} else if ref != "" {
			is["basedOn"] = []any{obj{"reference": ref}}
		}
	}
	is["identifier"] = ids
	if started := s.started(st); started != "" {
		is["started"] = started
	}
	if st.Description != "" {
		is["description"] = st.Description
	}
	if st.Referring != "" {
		if name := pnDisplay(st.Referring); name != "" {
			is["referrer"] = obj{"display": name}
		}
	}
	if s.cfg.DICOMwebBase != "" {
		ep, err := s.endpoint(ctx, tx)
		if err != nil {
			return nil, err
		}
		is["endpoint"] = []any{obj{"reference": ep}}
	}
	modalities := map[string]bool{}
	var series []any
	total := 0
	for _, se := range st.Series {
		mod := se.Modality
		if mod == "" {
			mod = "OT" // "other": series.modality is required
		}
		modalities[mod] = true
		sj := obj{
			"uid":               se.UID,
			"modality":          obj{"system": dcmSystem, "code": mod},
			"numberOfInstances": len(se.Instances),
		}
		if se.Number != nil && *se.Number >= 0 {
			sj["number"] = *se.Number
		}
		if se.Description != "" {
			sj["description"] = se.Description
		}
		if se.BodyPart != "" {
			sj["bodySite"] = obj{"display": se.BodyPart}
		}
		if se.Laterality != "" {
			sj["laterality"] = obj{"display": se.Laterality}
		}
		var insts []any
		for _, in := range se.Instances {
			ij := obj{"uid": in.SOPUID, "sopClass": obj{"system": "urn:ietf:rfc:3986", "code": "urn:oid:" + in.SOPClass}}
			if in.Number != nil && *in.Number >= 0 {
				ij["number"] = *in.Number
			}
			insts = append(insts, ij)
		}
		sj["instance"] = insts
		total += len(se.Instances)
		series = append(series, sj)
	}
	if len(series) > 0 {
		is["series"] = series
		var mods []string
		for m := range modalities {
			mods = append(mods, m)
		}
		sort.Strings(mods)
		var mc []any
		for _, m := range mods {
			mc = append(mc, obj{"system": dcmSystem, "code": m})
		}
		is["modality"] = mc
	}
	is["numberOfSeries"] = len(st.Series)
	is["numberOfInstances"] = total
	return json.Marshal(is)
}

// started combines StudyDate and StudyTime into a FHIR dateTime, in the
// instance's TimezoneOffsetFromUTC or else Config.Location.
func (s *Service) started(st *dicomdb.LockedStudy) string {
	d := st.Date
	if len(d) != 8 || !allDigits(d) {
		return ""
	}
	date := d[:4] + "-" + d[4:6] + "-" + d[6:]
	if _, err := time.Parse("2006-01-02", date); err != nil {
		return ""
	}
	tm := strings.ReplaceAll(st.Time, ":", "") // ACR-NEMA style HH:MM:SS
	frac := ""
	if i := strings.IndexByte(tm, '.'); i >= 0 {
		tm, frac = tm[:i], tm[i+1:]
	}
	if !allDigits(tm) || len(tm) < 2 {
		return date
	}
	for len(tm) < 6 {
		tm += "0"
	}
	hh, mm, ss := tm[0:2], tm[2:4], tm[4:6]
	t, err := time.Parse("2006-01-02T150405", date+"T"+hh+mm+ss)
	if err != nil {
		return date
	}
	loc := s.cfg.Location
	if z := st.TZOffset; len(z) == 5 && (z[0] == '+' || z[0] == '-') && allDigits(z[1:]) {
		h, m := int(z[1]-'0')*10+int(z[2]-'0'), int(z[3]-'0')*10+int(z[4]-'0')
		off := h*3600 + m*60
		if z[0] == '-' {
			off = -off
		}
		loc = time.FixedZone(z, off)
	}
	t = time.Date(t.Year(), t.Month(), t.Day(), t.Hour(), t.Minute(), t.Second(), 0, loc)
	out := t.Format("2006-01-02T15:04:05")
	if frac != "" && allDigits(frac) {
		out += "." + frac
	}
	return out + t.Format("Z07:00")
}

func allDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return len(s) > 0
}

// pnDisplay renders a DICOM PN (Family^Given^Middle^Prefix^Suffix) as
// "Prefix Given Middle Family Suffix".
func pnDisplay(pn string) string {
	alpha, _, _ := strings.Cut(pn, "=")
	c := strings.Split(alpha, "^")
	for len(c) < 5 {
		c = append(c, "")
	}
	var parts []string
	for _, p := range []string{c[3], c[1], c[2], c[0], c[4]} {
		if p = strings.TrimSpace(p); p != "" {
			parts = append(parts, p)
		}
	}
	return strings.Join(parts, " ")
}

// escapeToken escapes a token search value's special characters.
func escapeToken(s string) string {
	return strings.NewReplacer(`\`, `\\`, `,`, `\,`, `|`, `\|`, `$`, `\$`).Replace(s)
}

var oidPattern = regexp.MustCompile(`^[0-2](\.(0|[1-9][0-9]*))+$`)

// patientIdentifier is the identifier a study's PatientID maps to.
func (s *Service) patientIdentifier(st *dicomdb.LockedStudy) (system, value string) {
	if st.PatientID == "" {
		// No PatientID: the study's own patient, so unrelated studies
		// never merge into one Patient.
		return "urn:dicom:study-patient", "urn:oid:" + st.UID
	}
	switch {
	case st.Issuer == "":
		return s.cfg.PatientIDSystem, st.PatientID
	case oidPattern.MatchString(st.Issuer):
		return "urn:oid:" + st.Issuer, st.PatientID
	}
	return "urn:dicom:issuer:" + url.PathEscape(st.Issuer), st.PatientID
}

// patient returns "Patient/<id>" of the Patient with the study's
// identifier, created from the patient module when there is none.
func (s *Service) patient(ctx context.Context, tx *engine.Tx, st *dicomdb.LockedStudy) (string, error) {
	system, value := s.patientIdentifier(st)
	p := obj{"resourceType": "Patient", "identifier": []any{obj{"system": system, "value": value}}}
	if name := humanName(st.PatientName); name != nil {
		p["name"] = []any{name}
	}
	if bd := st.BirthDate; len(bd) == 8 && allDigits(bd) {
		if _, err := time.Parse("20060102", bd); err == nil {
			p["birthDate"] = bd[:4] + "-" + bd[4:6] + "-" + bd[6:]
		}
	}
	switch strings.ToUpper(st.Sex) {
	case "M":
		p["gender"] = "male"
	case "F":
		p["gender"] = "female"
	case "O":
		p["gender"] = "other"
	}
	body, err := json.Marshal(p)
	if err != nil {
		return "", fmt.Errorf("dicom: patient: %w", err)
	}
	r, err := s.eng.Parser().Parse(body, "Patient")
	if err != nil {
		return "", fmt.Errorf("dicom: Patient from the patient module does not validate: %w", err)
	}
	return s.findOrCreate(ctx, tx, r, system, value)
}

func humanName(pn string) obj {
	alpha, _, _ := strings.Cut(pn, "=")
	c := strings.Split(alpha, "^")
	for len(c) < 5 {
		c = append(c, "")
	}
	n := obj{}
	if f := strings.TrimSpace(c[0]); f != "" {
		n["family"] = f
	}
	var given []any
	for _, g := range []string{c[1], c[2]} {
		for _, w := range strings.Fields(g) {
			given = append(given, w)
		}
	}
	if len(given) > 0 {
		n["given"] = given
	}
	if p := strings.TrimSpace(c[3]); p != "" {
		n["prefix"] = []any{p}
	}
	if sfx := strings.TrimSpace(c[4]); sfx != "" {
		n["suffix"] = []any{sfx}
	}
	if len(n) == 0 {
		return nil
	}
	if t := pnDisplay(pn); t != "" {
		n["text"] = t
	}
	return n
}

// endpoint returns "Endpoint/<id>" of the Endpoint for the DICOMweb base,
// created when there is none.
func (s *Service) endpoint(ctx context.Context, tx *engine.Tx) (string, error) {
	body, err := json.Marshal(obj{
		"resourceType":    "Endpoint",
		"status":          "active",
		"identifier":      []any{obj{"system": "urn:ietf:rfc:3986", "value": s.cfg.DICOMwebBase}},
		"name":            "Ember DICOMweb",
		"connectionType":  obj{"system": "http://terminology.hl7.org/CodeSystem/endpoint-connection-type", "code": "dicom-wado-rs"},
		"payloadType":     []any{obj{"text": "DICOM"}},
		"payloadMimeType": []any{"application/dicom"},
		"address":         s.cfg.DICOMwebBase,
	})
	if err != nil {
		return "", fmt.Errorf("dicom: endpoint: %w", err)
	}
	r, err := s.eng.Parser().Parse(body, "Endpoint")
	if err != nil {
		return "", fmt.Errorf("dicom: Endpoint does not validate: %w", err)
	}
	return s.findOrCreate(ctx, tx, r, "urn:ietf:rfc:3986", s.cfg.DICOMwebBase)
}

// serviceRequest returns the ServiceRequest whose identifier is the
// accession number, when exactly one matches.
func (s *Service) serviceRequest(ctx context.Context, tx *store.Tx, accession string) (string, error) {
	q, err := search.Parse("ServiceRequest", url.Values{"identifier": {escapeToken(accession)}, "_count": {"2"}}, search.Options{Strict: true})
	if err != nil {
		return "", fmt.Errorf("dicom: ServiceRequest search: %w", err)
	}
	res, err := tx.Search(ctx, q)
	if err != nil {
		return "", fmt.Errorf("dicom: ServiceRequest search: %w", err)
	}
	if len(res.Matches) != 1 {
		return "", nil
	}
	return "ServiceRequest/" + res.Matches[0].ID, nil
}

// findOrCreate is the engine's conditional create of r on its identifier
// system|value — the condition a REST client sends as If-None-Exist:
// identifier=system|value, under the same lock — returning "<type>/<id>"
// of the match or of the new resource.
//
// Several resources with that identifier (entered by hand, or merged from
// another source) fail a REST conditional create. A PACS cannot answer
// that, and refusing would leave the study without its ImagingStudy, so
// the sync links the oldest of them (the first created: what Ember's DICOM
// sync has always chosen) and logs a warning naming the identifier, for an
// administrator to merge the duplicates.
func (s *Service) findOrCreate(ctx context.Context, tx *engine.Tx, r *fhir.Resource, system, value string) (string, error) {
	typ := r.Type()
	cond := url.Values{"identifier": {escapeToken(system) + "|" + escapeToken(value)}}
	res, err := tx.Create(engine.CreateRequest{Resource: r, IfNoneExistParams: cond})
	if err == nil {
		return typ + "/" + res.Version.ID, nil
	}
	if !engine.IsMultipleMatches(err) {
		return "", fmt.Errorf("dicom: create %s: %w", typ, err)
	}
	// The conditional create holds the condition's lock until the commit,
	// so the matches cannot change under this search. Unsorted results
	// come in creation order.
	cond.Set("_count", "1")
	q, err := search.Parse(typ, cond, search.Options{Strict: true, Base: s.eng.Base()})
	if err != nil {
		return "", fmt.Errorf("dicom: %s search: %w", typ, err)
	}
	found, err := tx.StoreTx().Search(ctx, q)
	if err != nil {
		return "", fmt.Errorf("dicom: %s search: %w", typ, err)
	}
	if len(found.Matches) == 0 {
		return "", fmt.Errorf("dicom: %s by an identifier of system %s: several matched, then none", typ, system)
	}
	id := found.Matches[0].ID
	// The identifier's value (a patient ID, an accession number) is
	// patient data: the log names the system and the resource linked.
	s.log.Warn("dicom: several resources have the identifier a study maps to; linking the oldest",
		"type", typ, "system", system, "linked", typ+"/"+id)
	return typ + "/" + id, nil
}
