// Narratives (Resource.text.div) are the only markup the console inserts,
// and only through DOMPurify, limited to the XHTML subset FHIR R4 allows
// (https://hl7.org/fhir/R4/narrative.html): no scripts, forms, frames,
// objects or event handlers. Beyond what FHIR forbids, style attributes go
// (the console's CSP allows no inline style), images other than data: URLs
// go (the CSP loads none from elsewhere), and links to FHIR resources
// ("Patient/123") become console links.
import DOMPurify from '../vendor/dompurify/purify.es.mjs';

const TAGS = ['a', 'abbr', 'acronym', 'b', 'big', 'blockquote', 'br', 'caption', 'cite', 'code', 'col', 'colgroup',
  'dd', 'dfn', 'div', 'dl', 'dt', 'em', 'h1', 'h2', 'h3', 'h4', 'h5', 'h6', 'hr', 'i', 'img', 'li', 'ol', 'p', 'pre',
  'q', 'samp', 'small', 'span', 'strong', 'sub', 'sup', 'table', 'tbody', 'td', 'tfoot', 'th', 'thead', 'tr', 'tt',
  'ul', 'var'];

const ATTRS = ['abbr', 'align', 'alt', 'border', 'cellpadding', 'cellspacing', 'cite', 'class', 'colspan', 'datetime',
  'dir', 'headers', 'height', 'href', 'id', 'lang', 'name', 'rowspan', 'scope', 'span', 'src', 'start', 'summary',
  'title', 'type', 'valign', 'value', 'width'];

const RESOURCE_REF = /^([A-Z][A-Za-z]+)\/([A-Za-z0-9\-.]{1,64})(?:\/_history\/[A-Za-z0-9\-.]{1,64})?$/;

DOMPurify.addHook('afterSanitizeAttributes', (node) => {
  if (node.nodeName === 'IMG') {
    const src = node.getAttribute('src') || '';
    if (!/^data:image\/(png|gif|jpeg|webp);/i.test(src)) node.removeAttribute('src');
    if (!node.hasAttribute('alt')) node.setAttribute('alt', '');
  }
  if (node.nodeName === 'A' && node.hasAttribute('href')) {
    const href = node.getAttribute('href');
    const ref = RESOURCE_REF.exec(href);
    if (ref) {
      node.setAttribute('href', '#/resource/' + ref[1] + '/' + ref[2]);
    } else if (/^(https?:|mailto:)/i.test(href)) {
      node.setAttribute('rel', 'noopener noreferrer external');
    } else {
      // Fragments and relative paths would land in the console's router.
      node.removeAttribute('href');
    }
  }
});

const XHTML_NS = /\sxmlns="http:\/\/www\.w3\.org\/1999\/xhtml"/g;
const VOID = new Set(['area', 'base', 'br', 'col', 'embed', 'hr', 'img', 'input', 'link', 'meta', 'param', 'source', 'track', 'wbr']);

// preclean drops every attribute outside ATTRS (style, event handlers)
// before DOMPurify parses the narrative: Chromium applies the page's CSP
// even to documents that are only parsed (DOMParser, template,
// createHTMLDocument), so a style attribute or an onclick would be refused
// there and logged as a violation. Read as plain XML (no XHTML namespace,
// so nothing is styled or compiled), the attributes can be removed before
// any HTML parse. A narrative that is not well-formed XML falls back to a
// textual removal; anything that slips through is still blocked by the CSP
// and removed by DOMPurify.
function preclean(xhtml) {
  const doc = new DOMParser().parseFromString(xhtml.replace(XHTML_NS, ''), 'application/xml');
  if (doc.getElementsByTagName('parsererror').length || !doc.documentElement) {
    return xhtml.replace(/\s(style|on[a-z]+)\s*=\s*("[^"]*"|'[^']*'|[^\s>]+)/gi, '');
  }
  for (const el of doc.getElementsByTagName('*')) {
    for (const a of [...el.attributes]) if (!ATTRS.includes(a.name.toLowerCase())) el.removeAttribute(a.name);
    // <span/> would open a span in HTML: keep an end tag.
    if (!el.firstChild && !VOID.has(el.localName)) el.appendChild(doc.createTextNode(''));
  }
  return new XMLSerializer().serializeToString(doc.documentElement);
}

// sanitize returns a DocumentFragment of the narrative div's content, safe
// to insert.
export function sanitize(xhtml) {
  return DOMPurify.sanitize(preclean(String(xhtml || '')), {
    ALLOWED_TAGS: TAGS,
    ALLOWED_ATTR: ATTRS,
    FORBID_ATTR: ['style'],
    ALLOW_DATA_ATTR: false,
    SANITIZE_NAMED_PROPS: true,
    RETURN_DOM_FRAGMENT: true,
  });
}
