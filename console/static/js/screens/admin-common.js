// What the Admin screen's sections share: calls to the authorization
// server's admin API, forms whose errors sit beside the field they name
// (the client's checks and the server's answers alike), confirmations and
// copy buttons.
import { h, append, replace, message } from '../dom.js';
import { ApiError, describe, diagnostics } from '../api.js';

// adminCall sends one admin API request (path below /auth/admin/) and
// returns its JSON answer (null for 204). Refusals throw ApiError, whose
// message is the raw answer: problem() reads it.
export async function adminCall(ctx, method, path, body) {
  const opts = { method, headers: { Accept: 'application/json' } };
  if (body !== undefined) {
    opts.body = JSON.stringify(body);
    opts.headers['Content-Type'] = 'application/json';
  }
  const res = await ctx.api.request(ctx.api.root + 'auth/admin/' + path, opts);
  const text = await res.text();
  return text ? JSON.parse(text) : null;
}

// problem is what a refusal says and the form field it is about: the admin
// API's error_description starts with the field ("redirect_uris: …"); an
// OperationOutcome names it in an issue's expression or its diagnostics'
// first word. field is "" when no field is named.
export function problem(err, fieldNames) {
  if (!(err instanceof ApiError)) return { field: '', text: describe(err) };
  let desc = '';
  try {
    const j = JSON.parse(err.message);
    if (j && typeof j.error_description === 'string') desc = j.error_description;
  } catch (e) {
    // Not the admin API's JSON.
  }
  const names = fieldNames || [];
  if (desc) {
    const m = /^([A-Za-z_][\w.-]*): ([\s\S]*)$/.exec(desc);
    const field = m && names.includes(m[1]) ? m[1] : '';
    const prefix = err.kind === 'denied' ? 'not permitted: ' : '';
    return { field, text: prefix + (field ? m[2] : desc) };
  }
  if (err.outcome) {
    for (const i of err.issues) {
      for (const ex of [...(i.expression || []), ...(i.location || [])]) {
        const f = names.find((n) => ex === n || ex.startsWith(n + '.') || ex.startsWith(n + '['));
        if (f) return { field: f, text: diagnostics({ issue: [i] }) || describe(err) };
      }
      const f = firstNamed(i.diagnostics || '', names);
      if (f) return { field: f, text: i.diagnostics };
    }
  }
  return { field: '', text: describe(err) };
}

// firstNamed is the name in names that text mentions first, as a word of
// its own ("_type", "date"), or "".
function firstNamed(text, names) {
  let best = '';
  let at = Infinity;
  for (const n of names) {
    const re = new RegExp('(^|[^\\w-])' + n.replace(/[.*+?^${}()|[\]\\]/g, '\\$&') + '(?![\\w-])');
    const m = re.exec(text);
    if (m && m.index < at) { best = n; at = m.index; }
  }
  return best;
}

// Form is a <form> of labelled fields, each with a place for its error.
// Errors go beside their field (aria-invalid, aria-describedby) and the
// first one gets focus; an error about no field goes in the form's status.
export class Form {
  constructor(id, label) {
    this.id = id;
    this.fields = new Map();
    this.status = h('div', { class: 'form-status', id: id + '-status' });
    this.el = h('form', { id, class: 'admin-form', 'aria-label': label, novalidate: true });
  }

  // add places a control with its label, an optional hint and its error;
  // name is the API's field name. It returns the field's wrapper.
  add(name, label, control, hint) {
    const id = this.id + '-' + name.replace(/[^A-Za-z0-9_-]/g, '-');
    if (!control.id) control.id = id;
    if (!control.name) control.name = name;
    const hintEl = hint ? h('p', { class: 'hint', id: id + '-hint' }, hint) : null;
    const error = h('p', { class: 'field-error', id: id + '-error', hidden: true });
    control.setAttribute('aria-describedby', [hintEl && hintEl.id, error.id].filter(Boolean).join(' '));
    const wrap = h('div', { class: 'field', dataset: { field: name } }, h('label', { for: control.id }, label), control, hintEl, error);
    this.fields.set(name, { control, error, wrap });
    return wrap;
  }

  // group adds a fieldset (radio buttons, checkboxes) under name.
  group(name, legend, controls, hint) {
    const id = this.id + '-' + name.replace(/[^A-Za-z0-9_-]/g, '-');
    const hintEl = hint ? h('p', { class: 'hint', id: id + '-hint' }, hint) : null;
    const error = h('p', { class: 'field-error', id: id + '-error', hidden: true });
    const set = h('fieldset', { class: 'field choices', id, dataset: { field: name },
      'aria-describedby': [hintEl && hintEl.id, error.id].filter(Boolean).join(' ') },
    h('legend', null, legend), controls, hintEl, error);
    this.fields.set(name, { control: set.querySelector('input') || set, error, wrap: set, group: set });
    return set;
  }

  names() { return [...this.fields.keys()]; }

  clear() {
    for (const f of this.fields.values()) {
      f.error.hidden = true;
      f.error.textContent = '';
      (f.group || f.control).removeAttribute('aria-invalid');
    }
    replace(this.status);
  }

  // show puts each {field, text} beside its field, or in the status.
  show(errors) {
    let first = null;
    for (const e of errors) {
      const f = this.fields.get(e.field);
      if (f) {
        f.error.textContent = e.text;
        f.error.hidden = false;
        (f.group || f.control).setAttribute('aria-invalid', 'true');
        if (!first) first = f.control;
      } else {
        append(this.status, message('error', e.text));
      }
    }
    if (first) first.focus();
    else if (this.status.firstChild) {
      this.status.firstChild.setAttribute('tabindex', '-1');
      this.status.firstChild.focus();
    }
  }

  // refused shows a server's refusal beside the field it names.
  refused(err) {
    this.show([problem(err, this.names())]);
  }

  ok(node) {
    replace(this.status, node);
  }
}

// confirmBox asks in place (inside status) before a destructive action:
// run is called on "yes" and returns what to show then (a node).
export function confirmBox(status, { text, yes, id, onDone, run, opener }) {
  if (opener) opener.setAttribute('aria-expanded', 'true');
  const yesBtn = h('button', { type: 'button', class: 'danger primary', id }, yes);
  const noBtn = h('button', { type: 'button' }, 'Cancel');
  const close = () => {
    replace(status);
    if (opener) { opener.setAttribute('aria-expanded', 'false'); opener.focus(); }
  };
  replace(status, h('div', { class: 'confirm', role: 'group', 'aria-label': yes },
    h('p', null, text), h('div', { class: 'actions' }, yesBtn, noBtn)));
  noBtn.addEventListener('click', close);
  yesBtn.addEventListener('click', async () => {
    yesBtn.disabled = true;
    let node;
    try {
      node = await run();
    } catch (e) {
      node = message('error', problem(e).text);
    }
    replace(status, node);
    if (opener) opener.setAttribute('aria-expanded', 'false');
    if (node && node.setAttribute) { node.setAttribute('tabindex', '-1'); node.focus(); }
    if (onDone) onDone();
  });
  yesBtn.focus();
}

// done is a success note.
export function done(text, ...more) {
  return h('p', { class: 'msg msg-ok', role: 'status' }, text, more);
}

// copyButton copies the value of input (a read-only text field next to
// it). Without clipboard access the text is selected for Ctrl+C.
export function copyButton(input, label, id) {
  const note = h('span', { class: 'copy-note', role: 'status' });
  const btn = h('button', { type: 'button', id, class: 'copy' }, label);
  btn.addEventListener('click', async () => {
    try {
      await navigator.clipboard.writeText(input.value);
      note.textContent = 'Copied.';
    } catch (e) {
      input.focus();
      input.select();
      note.textContent = 'Selected: press Ctrl+C (or ⌘C) to copy.';
    }
  });
  return [btn, note];
}

// copyable is a read-only field with its value and a copy button.
export function copyable(id, label, value) {
  const input = h('input', { type: 'text', id, readonly: true, value, class: 'copyable', spellcheck: 'false' });
  return h('div', { class: 'field copy-field' }, h('label', { for: id }, label),
    h('div', { class: 'copy-row' }, input, copyButton(input, 'Copy', id + '-copy')));
}

// absoluteURL reads an absolute URL without fragment (as the server
// wants redirect, launch and JWKS URIs), or null.
export function absoluteURL(s) {
  if (!s || s.includes('#') || /\s/.test(s)) return null;
  try {
    return new URL(s);
  } catch (e) {
    return null;
  }
}
