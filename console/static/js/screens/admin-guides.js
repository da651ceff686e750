// Admin › Implementation guides: what the CapabilityStatement instantiates
// and the profiles (StructureDefinitions of kind resource, derivation
// constraint) the server holds, grouped by the guide package they came
// from when an ImplementationGuide resource names it.
import { h, append, section, message, link } from '../dom.js';
import { describe, messageKind } from '../api.js';

// canonicalBase is a canonical URL less its "/Type/id" tail:
// http://hl7.org/fhir/us/core/StructureDefinition/us-core-patient →
// http://hl7.org/fhir/us/core.
function canonicalBase(url) {
  const m = /^(.*)\/[A-Z][A-Za-z]+\/[^/]+$/.exec(url || '');
  return m ? m[1] : '';
}

export async function guides(ctx) {
  const inst = section('What this server claims', 2, { id: 'guides-claims' });
  const prof = section('Profiles', 2, { id: 'guides-profiles' });
  append(ctx.view, inst, prof);
  let m = null;
  try {
    m = await ctx.metadata();
  } catch (e) {
    append(inst, message(messageKind(e), describe(e, 'CapabilityStatement')));
  }
  if (m) {
    const claims = [...(m.instantiates || []).map((u) => ['instantiates', u]), ...(m.implementationGuide || []).map((u) => ['implementation guide', u])];
    if (claims.length) {
      append(inst, h('ul', { id: 'instantiates' }, claims.map(([kind, u]) => h('li', null, h('code', null, u), ' ', h('span', { class: 'badge' }, kind)))));
    } else {
      append(inst, message('info', 'The CapabilityStatement instantiates no other statement: this server serves base FHIR ' + (m.fhirVersion || 'R4') +
        ' without an installed guide (ember ig install).'));
    }
  }

  const [igs, sds] = await Promise.allSettled([
    ctx.api.searchAll('ImplementationGuide', { _elements: 'url,name,title,version,packageId', _count: '100' }, 500),
    ctx.api.searchAll('StructureDefinition', { derivation: 'constraint', kind: 'resource', _elements: 'url,name,type,version', _count: '500' }, 5000),
  ]);
  if (sds.status === 'rejected') {
    append(prof, message(messageKind(sds.reason), describe(sds.reason, 'StructureDefinition search')));
    return;
  }
  const packages = new Map(); // canonical base → "packageId#version"
  for (const ig of igs.status === 'fulfilled' ? igs.value : []) {
    const base = canonicalBase(ig.url);
    if (base && ig.packageId) packages.set(base, ig.packageId + (ig.version ? '#' + ig.version : ''));
  }
  const groups = new Map();
  for (const sd of sds.value) {
    const base = canonicalBase(sd.url);
    const key = packages.get(base) || (base ? 'canonical ' + base : 'no canonical URL');
    if (!groups.has(key)) groups.set(key, []);
    groups.get(key).push(sd);
  }
  if (!groups.size) {
    append(prof, message('info', 'No profiles: no StructureDefinition of kind resource with derivation constraint is stored.'));
    return;
  }
  append(prof, h('p', { id: 'profile-count' }, sds.value.length + ' profiles in ' + groups.size + (groups.size === 1 ? ' group' : ' groups') + '.'));
  const keys = [...groups.keys()].sort((a, b) => (a.startsWith('canonical ') - b.startsWith('canonical ')) || a.localeCompare(b));
  for (const key of keys) {
    const list = groups.get(key).sort((a, b) => (a.type || '').localeCompare(b.type || '') || (a.name || '').localeCompare(b.name || ''));
    append(prof, h('table', { class: 'admin-table guide', dataset: { package: key } },
      h('caption', null, key + ' — ' + list.length + (list.length === 1 ? ' profile' : ' profiles')),
      h('thead', null, h('tr', null, ['Name', 'Type', 'Version', 'URL'].map((t) => h('th', { scope: 'col' }, t)))),
      h('tbody', null, list.map((sd) => h('tr', null,
        h('th', { scope: 'row' }, link('/resource/StructureDefinition/' + sd.id, sd.name || sd.id)),
        h('td', null, sd.type || ''),
        h('td', null, sd.version || ''),
        h('td', null, h('code', null, sd.url || '')))))));
  }
}
