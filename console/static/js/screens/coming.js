// Placeholders for the screens of later slices (Imaging, Admin).
import { h, append } from '../dom.js';

export async function coming(ctx) {
  const what = ctx.route.what;
  ctx.heading(what);
  append(ctx.view, h('p', { class: 'msg msg-info' }, what + ' is coming in a later version of Ember Console.'));
}
