// Plain-text renderings of FHIR data types for lists, tables and the chart.

export function humanName(names) {
  const n = (names || []).find((x) => x.use === 'official') || (names || [])[0];
  if (!n) return '';
  if (n.text) return n.text;
  return [(n.prefix || []).join(' '), (n.given || []).join(' '), n.family, (n.suffix || []).join(' ')]
    .filter(Boolean).join(' ');
}

export function codingText(c) {
  if (!c) return '';
  return c.display || c.code || '';
}

export function concept(cc) {
  if (!cc) return '';
  if (cc.text) return cc.text;
  const c = (cc.coding || []).find((x) => x.display) || (cc.coding || [])[0];
  return codingText(c);
}

export function quantity(q) {
  if (!q || q.value == null) return '';
  return String(q.value) + (q.unit || q.code ? ' ' + (q.unit || q.code) : '');
}

export function period(p) {
  if (!p) return '';
  if (p.start && p.end && p.start !== p.end) return date(p.start) + ' – ' + date(p.end);
  return date(p.start || p.end);
}

// date shows a FHIR date or dateTime as written, less the seconds'
// fraction and zone noise: 2019-05-31T12:00:00+02:00 → 2019-05-31 12:00.
export function date(s) {
  if (!s) return '';
  const m = /^(\d{4}(?:-\d{2}(?:-\d{2})?)?)(?:T(\d{2}:\d{2}))?/.exec(s);
  return m ? m[1] + (m[2] ? ' ' + m[2] : '') : s;
}

// value is an element's value[x] as text.
export function value(r) {
  if (!r) return '';
  if (r.valueQuantity) return quantity(r.valueQuantity);
  if (r.valueCodeableConcept) return concept(r.valueCodeableConcept);
  for (const k of ['valueString', 'valueBoolean', 'valueInteger', 'valueDateTime', 'valueTime']) {
    if (r[k] != null) return String(r[k]);
  }
  if (r.component) return r.component.map((c) => concept(c.code) + ' ' + value(c)).join(', ');
  return '';
}

// effective is when an event happened or was recorded, for sorting.
export function when(r) {
  return r.effectiveDateTime || (r.effectivePeriod && r.effectivePeriod.start) || r.effectiveInstant ||
    (r.period && r.period.start) || r.onsetDateTime || (r.onsetPeriod && r.onsetPeriod.start) || r.recordedDate ||
    r.authoredOn || r.occurrenceDateTime || r.performedDateTime || (r.performedPeriod && r.performedPeriod.start) ||
    r.issued || r.date || r.recorded || r.birthDate || (r.meta && r.meta.lastUpdated) || '';
}

// summary is one line about a resource for result tables.
export function summary(r) {
  switch (r.resourceType) {
    case 'Patient':
    case 'Practitioner':
    case 'RelatedPerson':
      return [humanName(r.name), r.gender, r.birthDate && 'born ' + r.birthDate].filter(Boolean).join(', ');
    case 'Observation':
      return [concept(r.code), value(r), date(when(r))].filter(Boolean).join(' · ');
    case 'Encounter':
      return [concept((r.type || [])[0]) || (r.class && r.class.code), period(r.period)].filter(Boolean).join(' · ');
    case 'MedicationRequest':
      return [concept(r.medicationCodeableConcept) || (r.medicationReference && r.medicationReference.display) ||
        (r.medicationReference && r.medicationReference.reference), r.status, date(r.authoredOn)].filter(Boolean).join(' · ');
    case 'AuditEvent':
      return [codingText(r.type), (r.subtype || []).map(codingText).join(', '), r.action, date(r.recorded)].filter(Boolean).join(' · ');
    case 'Organization':
    case 'Location':
    case 'Device':
      return r.name || concept(r.type && r.type[0]) || '';
    default: {
      const label = r.name && typeof r.name === 'string' ? r.name : r.title || concept(r.code) ||
        concept(r.type && (Array.isArray(r.type) ? r.type[0] : r.type)) || concept(r.vaccineCode) || '';
      return [label, r.status, date(when(r))].filter(Boolean).join(' · ');
    }
  }
}

// refId is the id of a literal "Type/id" reference of the given type.
export function refId(ref, type) {
  const m = /^(?:.*\/)?([A-Za-z]+)\/([A-Za-z0-9\-.]{1,64})$/.exec((ref && ref.reference) || '');
  return m && (!type || m[1] === type) ? m[2] : null;
}
