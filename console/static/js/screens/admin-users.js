// Admin › Users: the accounts that sign in at this server (role, FHIR
// user, lock), adding one, and per user a password reset, unlock, role
// change and removal, each destructive one confirmed first.
import { h, append, replace, section, message } from '../dom.js';
import { messageKind } from '../api.js';
import { date } from '../format.js';
import { adminCall, Form, confirmBox, done, problem } from './admin-common.js';

export const ROLES = ['admin', 'doctor', 'nurse', 'pharmacist', 'receptionist', 'patient'];
const FHIR_USER = /^(Practitioner|PractitionerRole|Patient|RelatedPerson|Person)\/[A-Za-z0-9\-.]{1,64}$/;

export async function users(ctx) {
  const list = section('Users', 2, { id: 'users-list' });
  const action = h('div', { id: 'user-action' });
  const add = section('Add a user', 2, { id: 'user-add' });
  append(ctx.view, list, action, add);
  const reload = () => listUsers(ctx, list, action);
  addForm(ctx, add, reload);
  await reload();
}

async function listUsers(ctx, el, action) {
  replace(el, el.firstChild);
  let users;
  try {
    users = (await adminCall(ctx, 'GET', 'users')).users || [];
  } catch (e) {
    append(el, message(messageKind(e), problem(e).text));
    return;
  }
  const reload = () => listUsers(ctx, el, action);
  append(el, h('table', { id: 'users', class: 'admin-table' },
    h('caption', null, users.length + (users.length === 1 ? ' user' : ' users')),
    h('thead', null, h('tr', null, ['Username', 'Role', 'FHIR user', 'Failed logins', 'Locked', 'Actions']
      .map((t) => h('th', { scope: 'col' }, t)))),
    h('tbody', null, users.map((u) => userRow(ctx, u, action, reload)))));
}

function hidden(text) {
  return h('span', { class: 'visually-hidden' }, text);
}

function userRow(ctx, u, action, reload) {
  const self = ctx.session.who && ctx.session.who.name === u.username;
  const btn = (cls, label, onclick, attrs) => h('button', Object.assign({ type: 'button', class: cls, 'aria-controls': 'user-action',
    onclick: (e) => onclick(e.currentTarget) }, attrs || {}), label, hidden(' ' + u.username));
  const actions = h('div', { class: 'row-actions' },
    btn('reset-password', 'Reset password…', (b) => passwordPanel(ctx, action, u, b, reload)),
    btn('unlock', 'Unlock', (b) => unlock(ctx, action, u, b, reload), { disabled: !u.locked && !u.failed_logins }),
    btn('change-role', 'Change role…', (b) => rolePanel(ctx, action, u, b, reload)),
    self ? h('span', { class: 'muted' }, 'you') : btn('danger remove-user', 'Remove…', (b) => confirmBox(action, {
      opener: b,
      id: 'confirm-remove-user',
      yes: 'Remove user ' + u.username,
      text: 'Remove the user ' + u.username + '? They can no longer sign in, and their refresh tokens are revoked.',
      run: async () => {
        await adminCall(ctx, 'DELETE', 'users/' + encodeURIComponent(u.username));
        return done('Removed the user ' + u.username + '.');
      },
      onDone: reload,
    }), { 'aria-expanded': 'false' }));
  return h('tr', { dataset: { username: u.username, role: u.role, locked: String(Boolean(u.locked)) } },
    h('th', { scope: 'row' }, u.username),
    h('td', { class: 'role' }, u.role),
    h('td', null, u.fhir_user),
    h('td', { class: 'num' }, String(u.failed_logins || 0)),
    h('td', { class: 'locked' }, u.locked ? 'until ' + date(u.locked_until) : 'no'),
    h('td', null, actions));
}

async function unlock(ctx, action, u, button, reload) {
  button.disabled = true;
  let node;
  try {
    await adminCall(ctx, 'POST', 'users/' + encodeURIComponent(u.username) + '/unlock');
    node = done('Unlocked ' + u.username + ': their failed logins are cleared.');
  } catch (e) {
    node = message('error', problem(e).text);
    button.disabled = false;
  }
  replace(action, node);
  await reload();
}

// panel is the action area's content: a titled group with a form whose
// submit button confirms, and Cancel.
function panel(action, title, intro, form, submit, opener) {
  const cancel = h('button', { type: 'button', onclick: () => { replace(action); opener.focus(); } }, 'Cancel');
  append(form.el, h('div', { class: 'actions' }, submit, cancel), form.status);
  replace(action, h('div', { class: 'confirm', role: 'group', 'aria-label': title }, h('h3', null, title), h('p', null, intro), form.el));
}

function passwordPanel(ctx, action, u, opener, reload) {
  const form = new Form('password-form', 'New password for ' + u.username);
  const pw = h('input', { type: 'password', autocomplete: 'new-password' });
  const again = h('input', { type: 'password', autocomplete: 'new-password' });
  append(form.el, form.add('password', 'New password', pw, 'At least 8 characters.'), form.add('again', 'The new password again', again));
  const submit = h('button', { type: 'submit', class: 'danger primary', id: 'password-submit' }, 'Set new password for ' + u.username);
  panel(action, 'Reset the password of ' + u.username,
    'Their sessions end (refresh tokens revoked) and a lock is cleared; give them the new password by a safe way.', form, submit, opener);
  pw.focus();
  form.el.addEventListener('submit', async (e) => {
    e.preventDefault();
    form.clear();
    const errors = [];
    if (pw.value.length < 8) errors.push({ field: 'password', text: 'At least 8 characters.' });
    else if (pw.value !== again.value) errors.push({ field: 'again', text: 'The two passwords differ.' });
    if (errors.length) {
      form.show(errors);
      return;
    }
    submit.disabled = true;
    try {
      await adminCall(ctx, 'POST', 'users/' + encodeURIComponent(u.username) + '/password', { password: pw.value });
    } catch (err) {
      submit.disabled = false;
      form.refused(err);
      return;
    }
    replace(action, done('Set a new password for ' + u.username + '.'));
    action.firstChild.setAttribute('tabindex', '-1');
    action.firstChild.focus();
    await reload();
  });
}

function rolePanel(ctx, action, u, opener, reload) {
  const form = new Form('role-form', 'Role of ' + u.username);
  const role = h('select', null, ROLES.map((r) => h('option', { value: r }, r)));
  role.value = u.role;
  append(form.el, form.add('role', 'New role', role, 'Currently ' + u.role + '.'));
  const submit = h('button', { type: 'submit', class: 'danger primary', id: 'role-submit' }, 'Change role of ' + u.username);
  panel(action, 'Change the role of ' + u.username,
    'The role bounds what they may be granted; their refresh tokens, which carry the old role, are revoked.', form, submit, opener);
  role.focus();
  form.el.addEventListener('submit', async (e) => {
    e.preventDefault();
    form.clear();
    const errors = [];
    if (role.value === u.role) errors.push({ field: 'role', text: u.username + ' has this role already.' });
    else if (role.value === 'patient' && !u.fhir_user.startsWith('Patient/')) {
      errors.push({ field: 'role', text: 'A user with role patient must be a Patient, not ' + u.fhir_user + '.' });
    } else if (ctx.session.who && ctx.session.who.name === u.username && role.value !== 'admin') {
      errors.push({ field: 'role', text: 'You cannot take the admin role from yourself.' });
    }
    if (errors.length) {
      form.show(errors);
      return;
    }
    submit.disabled = true;
    try {
      await adminCall(ctx, 'POST', 'users/' + encodeURIComponent(u.username) + '/role', { role: role.value });
    } catch (err) {
      submit.disabled = false;
      form.refused(err);
      return;
    }
    replace(action, done(u.username + ' now has the role ' + role.value + '.'));
    action.firstChild.setAttribute('tabindex', '-1');
    action.firstChild.focus();
    await reload();
  });
}

function addForm(ctx, el, reload) {
  const form = new Form('user-form', 'Add a user');
  const username = h('input', { type: 'text', autocomplete: 'off', spellcheck: 'false' });
  const password = h('input', { type: 'password', autocomplete: 'new-password' });
  const role = h('select', null, h('option', { value: '' }, '(choose)'), ROLES.map((r) => h('option', { value: r }, r)));
  const fhirUser = h('input', { type: 'text', autocomplete: 'off', spellcheck: 'false', placeholder: 'Practitioner/123' });
  append(form.el,
    h('div', { class: 'form-grid' },
      form.add('username', 'Username', username, 'What they type at sign-in; no spaces.'),
      form.add('password', 'Password', password, 'At least 8 characters.'),
      form.add('role', 'Role', role),
      form.add('fhir_user', 'FHIR user', fhirUser, 'Who they are: Practitioner/ID, PractitionerRole/ID, Patient/ID, RelatedPerson/ID or Person/ID.')),
    h('div', { class: 'actions' }, h('button', { type: 'submit', class: 'primary', id: 'user-add-submit' }, 'Add user')),
    form.status);
  append(el, form.el);
  form.el.addEventListener('submit', async (e) => {
    e.preventDefault();
    form.clear();
    const body = { username: username.value.trim(), password: password.value, role: role.value, fhir_user: fhirUser.value.trim() };
    const errors = checkUser(body);
    if (errors.length) {
      form.show(errors);
      return;
    }
    let u;
    try {
      u = await adminCall(ctx, 'POST', 'users', body);
    } catch (err) {
      form.refused(err);
      return;
    }
    form.ok(done('Added the user ' + u.username + ' (' + u.role + ').'));
    form.el.reset();
    await reload();
  });
}

// checkUser is the server's rules for a new user (`ember user add`).
function checkUser(u) {
  const errors = [];
  if (!u.username || new TextEncoder().encode(u.username).length > 256 || /[\s\p{Cc}]/u.test(u.username)) {
    errors.push({ field: 'username', text: 'Required: at most 256 bytes, without spaces or control characters.' });
  }
  if (u.password.length < 8) errors.push({ field: 'password', text: 'At least 8 characters.' });
  if (!ROLES.includes(u.role)) errors.push({ field: 'role', text: 'Choose one of ' + ROLES.join(', ') + '.' });
  if (!FHIR_USER.test(u.fhir_user)) {
    errors.push({ field: 'fhir_user', text: 'Want Practitioner/ID, PractitionerRole/ID, Patient/ID, RelatedPerson/ID or Person/ID.' });
  } else if (u.role === 'patient' && !u.fhir_user.startsWith('Patient/')) {
    errors.push({ field: 'role', text: 'A user with role patient must be a Patient, not ' + u.fhir_user + '.' });
  }
  return errors;
}
