// Admin: SMART apps, users, Bulk Data exports, implementation guides and
// the audit log, for users with role admin. Apps and users go through the
// authorization server's admin API (/auth/admin/, which answers the
// console's tokens of admin users only); the rest are ordinary FHIR
// requests. The role check here only decides what to show: the server
// refuses everyone else all the same.
import { h, append, message } from '../dom.js';
import { apps } from './admin-apps.js';
import { users } from './admin-users.js';
import { exportsScreen } from './admin-exports.js';
import { guides } from './admin-guides.js';
import { auditLog } from './admin-audit.js';

const SECTIONS = [
  { id: 'apps', label: 'SMART apps', screen: apps, adminAPI: true },
  { id: 'users', label: 'Users', screen: users, adminAPI: true },
  { id: 'exports', label: 'Bulk exports', screen: exportsScreen },
  { id: 'guides', label: 'Implementation guides', screen: guides },
  { id: 'audit', label: 'Audit log', screen: auditLog },
];

// isAdmin reports whether the signed-in user has role admin (from the
// access token's claims); without sign-in (--auth none) everyone may.
export function isAdmin(session) {
  return session.authOff || Boolean(session.who && session.who.role === 'admin');
}

export async function admin(ctx) {
  const id = ctx.args[0] || 'apps';
  const sec = SECTIONS.find((s) => s.id === id);
  const allowed = isAdmin(ctx.session);
  ctx.heading(sec && allowed ? 'Admin: ' + sec.label : 'Admin');
  if (!allowed) {
    append(ctx.view, message('denied', 'Administration: not permitted. It is for users with role admin.'));
    return;
  }
  append(ctx.view, h('nav', { class: 'subnav', 'aria-label': 'Admin sections' },
    h('ul', null, SECTIONS.map((s) => h('li', null,
      h('a', { href: '#/admin/' + s.id, 'aria-current': s === sec ? 'page' : null, dataset: { section: s.id } }, s.label))))));
  if (!sec) {
    append(ctx.view, message('missing', 'The Admin screen has no section ' + id + '.'));
    return;
  }
  if (sec.adminAPI && ctx.session.authOff) {
    append(ctx.view, message('info', 'This server runs without sign-in (--auth none), so it has no admin API: manage ' +
      sec.label.toLowerCase() + ' with ember client and ember user.'));
    return;
  }
  await sec.screen(ctx);
}
