// DOM building without HTML strings: everything a user typed or the server
// returned goes in as text nodes or attribute values, never as markup.
// (Narratives are the one exception, and go through DOMPurify: narrative.js.)

// h creates an element. attrs: "class", "dataset" (an object), "on<event>"
// (a function), true for a boolean attribute; false and null are left out.
// Children: nodes, strings (as text), arrays of them, null (skipped).
export function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v == null || v === false) continue;
    if (k === 'style' || k === 'innerHTML') throw new Error('h: ' + k + ' is not allowed (CSP, escaping)');
    if (k === 'class') el.className = v;
    else if (k === 'dataset') Object.assign(el.dataset, v);
    else if (k.startsWith('on') && typeof v === 'function') el.addEventListener(k.slice(2), v);
    else if (v === true) el.setAttribute(k, '');
    else el.setAttribute(k, String(v));
  }
  append(el, children);
  return el;
}

// append adds children (as h does) to el.
export function append(el, ...children) {
  for (const c of children.flat(Infinity)) {
    if (c == null || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

// replace empties el and adds children.
export function replace(el, ...children) {
  el.replaceChildren();
  return append(el, children);
}

// link is an anchor to a console route ("#/…").
export function link(route, ...children) {
  return h('a', { href: '#' + route }, children);
}

// hashQuery encodes params (URLSearchParams or entries) for a route.
export function routeWithQuery(path, params) {
  const q = new URLSearchParams(params).toString();
  return q ? path + '?' + q : path;
}

// message is a paragraph for a state: "info", "error", "denied", "missing".
export function message(kind, text) {
  return h('p', { class: 'msg msg-' + kind, role: kind === 'error' ? 'alert' : null }, text);
}

// section is a labelled region with a heading of the given level.
let sectionSeq = 0;
export function section(title, level = 2, attrs = {}) {
  const id = 'sec-' + (++sectionSeq);
  const el = h('section', Object.assign({ 'aria-labelledby': id }, attrs), h('h' + level, { id }, title));
  return el;
}
