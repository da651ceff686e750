// JSON as text: a small parser that keeps every token as written (so a
// decimal's precision survives showing and editing: 1.50 stays 1.50, where
// JSON.parse and JSON.stringify would make it 1.5), a pretty printer on it,
// and the line of each element, to put an OperationOutcome's
// issue.expression next to the line it names.

export class JSONSyntaxError extends Error {
  constructor(message, pos) {
    super(message);
    this.pos = pos;
  }
}

// parse reads text into a tree of nodes: {kind: "object", members:
// [{key, keyPos, value}]}, {kind: "array", items}, {kind: "scalar", raw}.
// Every node has pos, its first character's offset.
export function parse(text) {
  let i = 0;
  const n = text.length;
  const ws = () => { while (i < n && ' \t\r\n'.includes(text[i])) i++; };
  const fail = (msg) => { throw new JSONSyntaxError(msg, Math.min(i, n)); };

  function str() {
    const start = i;
    i++; // opening quote
    while (i < n) {
      const c = text[i];
      if (c === '"') { i++; return text.slice(start, i); }
      if (c === '\\') {
        i++;
        if (i >= n) break;
        if (text[i] === 'u') {
          if (!/^[0-9a-fA-F]{4}$/.test(text.slice(i + 1, i + 5))) fail('bad \\u escape in a string');
          i += 5;
          continue;
        }
        if (!'"\\/bfnrt'.includes(text[i])) fail('bad escape \\' + text[i] + ' in a string');
        i++;
        continue;
      }
      if (c < ' ') fail('control character in a string (line breaks must be written \\n)');
      i++;
    }
    i = start;
    fail('unterminated string');
    return '';
  }

  function value() {
    ws();
    if (i >= n) fail('unexpected end of the text: a value is missing');
    const pos = i;
    const c = text[i];
    if (c === '{') {
      i++;
      const members = [];
      ws();
      if (text[i] === '}') { i++; return { kind: 'object', members, pos }; }
      for (;;) {
        ws();
        if (text[i] !== '"') fail('expected a member name in double quotes');
        const keyPos = i;
        const rawKey = str();
        let key;
        try { key = JSON.parse(rawKey); } catch (e) { i = keyPos; fail('bad member name'); }
        ws();
        if (text[i] !== ':') fail('expected ":" after the member name ' + rawKey);
        i++;
        const v = value();
        members.push({ key, rawKey, keyPos, value: v });
        ws();
        if (text[i] === ',') { i++; continue; }
        if (text[i] === '}') { i++; return { kind: 'object', members, pos }; }
        fail('expected "," or "}" after a member');
      }
    }
    if (c === '[') {
      i++;
      const items = [];
      ws();
      if (text[i] === ']') { i++; return { kind: 'array', items, pos }; }
      for (;;) {
        items.push(value());
        ws();
        if (text[i] === ',') { i++; continue; }
        if (text[i] === ']') { i++; return { kind: 'array', items, pos }; }
        fail('expected "," or "]" after an array element');
      }
    }
    if (c === '"') return { kind: 'scalar', raw: str(), pos };
    const m = /^(?:-?(?:0|[1-9]\d*)(?:\.\d+)?(?:[eE][+-]?\d+)?|true|false|null)/.exec(text.slice(i, i + 1100));
    if (!m) fail('unexpected character ' + JSON.stringify(c));
    i += m[0].length;
    return { kind: 'scalar', raw: m[0], pos };
  }

  const root = value();
  ws();
  if (i < n) fail('unexpected text after the end of the JSON value');
  return root;
}

// pretty prints text's JSON with two-space indentation, every token kept
// as written.
export function pretty(text) {
  const out = [];
  const write = (node, indent) => {
    const pad = '  '.repeat(indent + 1);
    if (node.kind === 'scalar') { out.push(node.raw); return; }
    if (node.kind === 'object') {
      if (!node.members.length) { out.push('{}'); return; }
      out.push('{\n');
      node.members.forEach((m, k) => {
        out.push(pad, m.rawKey, ': ');
        write(m.value, indent + 1);
        out.push(k < node.members.length - 1 ? ',\n' : '\n');
      });
      out.push('  '.repeat(indent), '}');
      return;
    }
    if (!node.items.length) { out.push('[]'); return; }
    out.push('[\n');
    node.items.forEach((it, k) => {
      out.push(pad);
      write(it, indent + 1);
      out.push(k < node.items.length - 1 ? ',\n' : '\n');
    });
    out.push('  '.repeat(indent), ']');
  };
  write(parse(text), 0);
  return out.join('');
}

// lineAt is the 1-based line of offset pos in text.
export function lineAt(text, pos) {
  let line = 1;
  for (let k = 0; k < pos && k < text.length; k++) if (text.charCodeAt(k) === 10) line++;
  return line;
}

// lines maps each element's path ("status", "code.coding[0].system",
// "name[0].given[1]") to the line where it starts in text: a member's
// name, an array element's first character. The root is "".
export function lines(text) {
  const root = parse(text);
  const starts = new Map();
  // Offsets to lines in one pass.
  const nl = [];
  for (let k = 0; k < text.length; k++) if (text.charCodeAt(k) === 10) nl.push(k);
  const line = (pos) => {
    let lo = 0;
    let hi = nl.length;
    while (lo < hi) { const mid = (lo + hi) >> 1; if (nl[mid] < pos) lo = mid + 1; else hi = mid; }
    return lo + 1;
  };
  const visit = (node, path) => {
    if (node.kind === 'object') {
      for (const m of node.members) {
        // FHIR JSON's _name carries a primitive's id and extensions: same element.
        const name = m.key.startsWith('_') ? m.key.slice(1) : m.key;
        const p = path ? path + '.' + name : name;
        if (!starts.has(p)) starts.set(p, line(m.keyPos));
        visit(m.value, p);
      }
    } else if (node.kind === 'array') {
      node.items.forEach((it, k) => {
        const p = path + '[' + k + ']';
        if (!starts.has(p)) starts.set(p, line(it.pos));
        visit(it, p);
      });
    }
  };
  starts.set('', line(root.pos));
  visit(root, '');
  return starts;
}

// expressionPath turns a FHIRPath location of an OperationOutcome
// (Observation.code.coding[0].system, Observation.value.ofType(Quantity))
// into a lines() path, without the resource type.
export function expressionPath(expr, resourceType) {
  let e = String(expr || '').trim();
  e = e.replace(/([A-Za-z0-9_]+)\.ofType\(([A-Za-z0-9_]+)\)/g, (m, name, t) => name + t[0].toUpperCase() + t.slice(1));
  const dot = e.indexOf('.');
  const head = dot < 0 ? e.replace(/\[\d+\]$/, '') : e.slice(0, dot);
  if (/^[A-Z]/.test(head) && (!resourceType || head === resourceType || dot >= 0)) {
    e = dot < 0 ? '' : e.slice(dot + 1);
  }
  return e;
}

// lineOf is the line of expr in a lines() map: the element itself, else
// its nearest ancestor that is there (a missing member is reported on its
// parent), else the first line.
export function lineOf(map, expr, resourceType) {
  let p = expressionPath(expr, resourceType);
  for (;;) {
    if (map.has(p)) return map.get(p);
    if (!p) return 1;
    const cut = Math.max(p.lastIndexOf('.'), p.lastIndexOf('['));
    p = cut < 0 ? '' : p.slice(0, cut);
  }
}
