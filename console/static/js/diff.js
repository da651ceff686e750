// A line diff by longest common subsequence: the common head and tail are
// taken off first (versions of one resource mostly agree), then the classic
// dynamic programme runs on what is left.

// MAX_CELLS bounds the programme's table (rows × columns of the differing
// middle): beyond it the diff is refused rather than freezing the tab.
export const MAX_CELLS = 4e6;

// diffLines compares two texts line by line and returns
// [{op: " " | "-" | "+", text, a, b}] where a and b are 1-based line
// numbers in the old and new text (null where the line is not in it).
// It throws when the differing part is too large to compare.
export function diffLines(oldText, newText) {
  const a = oldText.split('\n');
  const b = newText.split('\n');
  let head = 0;
  while (head < a.length && head < b.length && a[head] === b[head]) head++;
  let tail = 0;
  while (tail < a.length - head && tail < b.length - head && a[a.length - 1 - tail] === b[b.length - 1 - tail]) tail++;
  const am = a.slice(head, a.length - tail);
  const bm = b.slice(head, b.length - tail);
  const n = am.length;
  const m = bm.length;
  if ((n + 1) * (m + 1) > MAX_CELLS) {
    throw new Error('the versions differ in ' + n + ' and ' + m + ' lines: too many to compare here');
  }
  // lcs[i][j]: the LCS length of am[i:] and bm[j:], row-major.
  const w = m + 1;
  const lcs = new Uint32Array((n + 1) * w);
  for (let i = n - 1; i >= 0; i--) {
    for (let j = m - 1; j >= 0; j--) {
      lcs[i * w + j] = am[i] === bm[j] ? lcs[(i + 1) * w + j + 1] + 1 : Math.max(lcs[(i + 1) * w + j], lcs[i * w + j + 1]);
    }
  }
  const out = [];
  for (let k = 0; k < head; k++) out.push({ op: ' ', text: a[k], a: k + 1, b: k + 1 });
  let i = 0;
  let j = 0;
  while (i < n || j < m) {
    if (i < n && j < m && am[i] === bm[j]) {
      out.push({ op: ' ', text: am[i], a: head + i + 1, b: head + j + 1 });
      i++; j++;
    } else if (i < n && (j === m || lcs[(i + 1) * w + j] >= lcs[i * w + j + 1])) {
      out.push({ op: '-', text: am[i], a: head + i + 1, b: null });
      i++;
    } else {
      out.push({ op: '+', text: bm[j], a: null, b: head + j + 1 });
      j++;
    }
  }
  for (let k = 0; k < tail; k++) {
    out.push({ op: ' ', text: a[a.length - tail + k], a: a.length - tail + k + 1, b: b.length - tail + k + 1 });
  }
  return out;
}

// hunks keeps the changed lines with context lines around them; a
// skipped run becomes {op: "…", count}.
export function hunks(lines, context = 3) {
  const keep = new Array(lines.length).fill(false);
  lines.forEach((l, k) => {
    if (l.op === ' ') return;
    for (let d = Math.max(0, k - context); d <= Math.min(lines.length - 1, k + context); d++) keep[d] = true;
  });
  const out = [];
  let skipped = 0;
  lines.forEach((l, k) => {
    if (keep[k]) {
      if (skipped) out.push({ op: '…', count: skipped });
      skipped = 0;
      out.push(l);
    } else {
      skipped++;
    }
  });
  if (skipped) out.push({ op: '…', count: skipped });
  return out;
}
