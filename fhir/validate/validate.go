// Package validate checks a FHIR R4 resource's JSON against tables generated
// from the R4 StructureDefinitions (fhir/spec/gen writes schema_gen.go). It
// walks the bytes once, allocating only for what it reports. It does no I/O.
package validate

import (
	"bytes"
	"strconv"
	"sync"

	"github.com/emberfhir/ember/fhir/internal/jsonread"
)

// Issue is one validation error. Expression locates it FHIRPath-style
// (Patient.name[0].given[1]); Code is an OperationOutcome issue type.
type Issue struct {
	Expression  string
	Diagnostics string
	Code        string // structure | value | required | code-invalid | invalid
}

// maxIssues bounds the issues one resource reports: enough to fix a batch of
// mistakes, too few for a hostile body to make the report large.
const maxIssues = 100

// Resource validates body, a JSON object that fhir's strict scanner already
// accepted (well-formed, UTF-8, no duplicate keys, no empty values, no null
// outside arrays). It returns nil when the resource is valid.
func Resource(body []byte) []Issue {
	w := walkers.Get().(*walker)
	w.data, w.pos, w.path, w.issues = body, 0, w.path[:0], nil
	w.skipSpace()
	if w.pos < len(w.data) && w.data[w.pos] == '{' {
		w.resource()
	} else {
		w.fail("structure", "a resource must be a JSON object")
	}
	issues := w.issues
	w.data, w.issues = nil, nil
	walkers.Put(w)
	return issues
}

var walkers = sync.Pool{New: func() any { return &walker{x: index()} }}

// walker holds the state of one validation.
type walker struct {
	x      *schemaIndex
	data   []byte
	pos    int
	path   []byte // FHIRPath of the value being checked
	issues []Issue
	buf    []byte // scratch for unescaped strings
	b64    []byte // scratch for base64
	// inContained is set while the members of a contained resource are
	// walked, where a "contained" member breaks dom-2.
	inContained bool
}

func (w *walker) fail(code, msg string) {
	if len(w.issues) >= maxIssues {
		return
	}
	w.issues = append(w.issues, Issue{Expression: string(w.path), Diagnostics: msg, Code: code})
}

func (w *walker) skipSpace() { w.pos = jsonread.SkipSpace(w.data, w.pos) }

// rawString returns the bytes between the quotes of the string at w.pos
// (escapes undecoded) and whether it has escapes, and moves past it.
func (w *walker) rawString() ([]byte, bool) {
	start := w.pos + 1
	end, plain := jsonread.PlainString(w.data, w.pos)
	esc := false
	if !plain {
		var f jsonread.Flags
		end, f, _ = jsonread.ScanString(w.data, w.pos, 0) // checked by fhir's scan
		esc = f&jsonread.Escaped != 0
	}
	w.pos = end
	return w.data[start:max(end-1, start)], esc
}

// str reads the string at w.pos, decoding escapes into w.buf when present;
// the result is only valid until the next call.
func (w *walker) str() []byte {
	raw, esc := w.rawString()
	if !esc {
		return raw
	}
	w.buf = jsonread.Unescape(w.buf[:0], raw)
	return w.buf
}

// skipValue moves past the value at w.pos.
func (w *walker) skipValue() {
	w.pos, _ = jsonread.SkipValue(w.data, jsonread.SkipSpace(w.data, w.pos), 0)
}

// token returns the literal or number at w.pos and moves past it.
func (w *walker) token() []byte {
	start := w.pos
	w.skipValue()
	return w.data[start:w.pos]
}

// nextMember reads the key of the next member of the object being walked
// (w.pos after '{' or after the previous value) and leaves w.pos at its
// value; ok is false at the closing brace, which it consumes. Scanned keys
// that matter have no escapes, so the key is left undecoded.
func (w *walker) nextMember() (key []byte, ok bool) {
	key, w.pos, ok = jsonread.NextMember(w.data, w.pos)
	return key, ok
}

// nextElement is nextMember for arrays.
func (w *walker) nextElement() (ok bool) {
	w.pos, ok = jsonread.NextElement(w.data, w.pos)
	return ok
}

func (w *walker) pushField(name []byte) int {
	n := len(w.path)
	if n > 0 {
		w.path = append(w.path, '.')
	}
	w.path = append(w.path, name...)
	return n
}

func (w *walker) pushIndex(i int) int {
	n := len(w.path)
	w.path = append(w.path, '[')
	w.path = strconv.AppendInt(w.path, int64(i), 10)
	w.path = append(w.path, ']')
	return n
}

// resource checks the resource object at w.pos, whose resourceType says
// which table applies. The path gains the type name only at the root, the
// style of fhir's scanner (Bundle.entry[0].resource.id, not ….resource.Patient.id).
func (w *walker) resource() {
	start := w.pos
	rt, found := w.resourceType()
	w.pos = start
	if !found {
		w.fail("required", `missing "resourceType": a resource must name its type`)
		w.skipValue()
		return
	}
	ti, ok := w.x.byName[string(rt)]
	if !ok {
		w.fail("value", "unknown resourceType "+strconv.Quote(string(rt)))
		w.skipValue()
		return
	}
	if len(w.path) == 0 {
		w.path = append(w.path, rt...)
	}
	w.object(int(ti), 0)
}

// resourceType finds the "resourceType" member of the object at w.pos.
func (w *walker) resourceType() ([]byte, bool) {
	return w.stringMember("resourceType")
}

// idSpan is where a contained resource's id lies in the body: the string
// between the quotes, escapes undecoded; empty when it has none.
type idSpan struct{ start, end int }

// containedID records the id of the contained resource at w.pos, element n
// of the array, in ids (indexed like the array), reporting it when an
// earlier one has it too: a reference "#id" must name one resource. w.pos
// is left where it was. ids is meant to live on the caller's stack: ids
// are compared in place, so a valid resource costs no allocation.
func (w *walker) containedID(ids []idSpan, n int) []idSpan {
	start := w.pos
	var id idSpan
	w.pos++ // {
	for {
		key, ok := w.nextMember()
		if !ok {
			break
		}
		if string(key) == "id" && w.data[w.pos] == '"' {
			raw, _ := w.rawString()
			id = idSpan{w.pos - 1 - len(raw), w.pos - 1}
			break
		}
		w.skipValue()
	}
	w.pos = start
	for len(ids) < n {
		ids = append(ids, idSpan{})
	}
	if id.end > id.start {
		for i, other := range ids {
			if other.end > other.start && w.sameString(other, id) {
				mark := w.pushField([]byte("id"))
				w.fail("duplicate", "duplicate contained resource id "+quote(jsonread.Unescape(nil, w.data[id.start:id.end]))+": contained["+strconv.Itoa(i)+"] has it too")
				w.path = w.path[:mark]
				break
			}
		}
	}
	return append(ids, id)
}

// sameString reports whether two JSON string contents in the body decode
// to the same text.
func (w *walker) sameString(a, b idSpan) bool {
	x, y := w.data[a.start:a.end], w.data[b.start:b.end]
	if bytes.IndexByte(x, '\\') < 0 && bytes.IndexByte(y, '\\') < 0 {
		return bytes.Equal(x, y)
	}
	return bytes.Equal(jsonread.Unescape(nil, x), jsonread.Unescape(nil, y)) // rare: escapes in an id
}

// stringMember finds the member key of the object at w.pos, and returns its
// value when it is a string (nil otherwise); it moves w.pos.
func (w *walker) stringMember(name string) ([]byte, bool) {
	w.pos++ // {
	for {
		key, ok := w.nextMember()
		if !ok {
			return nil, false
		}
		if string(key) == name {
			if w.data[w.pos] != '"' {
				return nil, true
			}
			return w.str(), true
		}
		w.skipValue()
	}
}

// arrayLen records a primitive member's array, to check that name and
// _name line up.
type arrayLen struct {
	field   int32
	n       int
	ext     bool
	hasNull bool
	start   int // offset of the array, to find its nulls again
}

// object checks the object at w.pos as an instance of typeTable[ti]. refs
// is the refTable entry (1-based) constraining a Reference's target.
func (w *walker) object(ti int, refs uint16) {
	t := &typeTable[ti]
	members := w.x.members[ti]
	var seen uint64
	var chosen [maxChoices]int32
	var arrays [4]arrayLen
	lens := arrays[:0]
	refStart, refEnd, refPath := -1, 0, 0
	w.pos++ // {
	for {
		key, ok := w.nextMember()
		if !ok {
			break
		}
		if t.resource && string(key) == "resourceType" {
			if w.data[w.pos] != '"' {
				mark := w.pushField(key)
				w.fail("value", "resourceType must be a string")
				w.path = w.path[:mark]
			}
			w.skipValue()
			continue
		}
		ext := key[0] == '_'
		name := key
		if ext {
			name = key[1:]
		}
		fi, ok := members[string(name)]
		if !ok || ext && !fieldTable[fi].kind.primitive() {
			w.fail("structure", "unknown member "+strconv.Quote(string(key))+" in "+t.name)
			w.skipValue()
			continue
		}
		f := &fieldTable[fi]
		if f.choice > 0 {
			c := &chosen[f.choice-1]
			if *c != 0 && *c != fi+1 {
				w.fail("structure", "only one of the "+choiceName(t, f)+" members is allowed, found "+
					strconv.Quote(fieldTable[*c-1].name)+" and "+strconv.Quote(f.name))
			}
			*c = fi + 1
		}
		if f.slot > 0 {
			seen |= 1 << (f.slot - 1)
		}
		mark := w.pushField(key)
		if ti == referenceType && !ext && string(key) == "reference" && w.data[w.pos] == '"' {
			refStart, refPath = w.pos, mark
		}
		isArray := w.data[w.pos] == '['
		start := w.pos
		n, hasNull := w.value(f, ext)
		if f.array() && isArray && f.kind.primitive() {
			lens = append(lens, arrayLen{field: fi, n: n, ext: ext, hasNull: hasNull, start: start})
		}
		if refStart == start {
			refEnd = w.pos
		}
		w.path = w.path[:mark]
	}
	if missing := w.x.required[ti] &^ seen; missing != 0 {
		w.missing(t, missing)
	}
	if len(lens) > 0 {
		w.align(lens)
	}
	if refStart >= 0 {
		raw := w.data[refStart+1 : refEnd-1]
		for _, c := range raw {
			if c == '\\' {
				raw = jsonread.Unescape(nil, raw)
				break
			}
		}
		mark := len(w.path)
		w.path = w.path[:refPath]
		w.checkReference(raw, refs)
		w.path = w.path[:mark]
	}
}

var referenceType = typeIndex("Reference")

func typeIndex(name string) int {
	for i := range typeTable {
		if typeTable[i].name == name {
			return i
		}
	}
	panic("validate: no type " + name)
}

// choiceBase is the common prefix of two members of one choice element.
func choiceBase(a, b string) string {
	i := 0
	for i < len(a) && i < len(b) && a[i] == b[i] {
		i++
	}
	for i > 0 && a[i-1] >= 'A' && a[i-1] <= 'Z' {
		i--
	}
	return a[:i]
}

func (w *walker) missing(t *typeDef, missing uint64) {
	for i := t.first; i < t.first+t.n; i++ {
		f := &fieldTable[i]
		if f.slot == 0 || missing&(1<<(f.slot-1)) == 0 {
			continue
		}
		missing &^= 1 << (f.slot - 1)
		name := f.name
		if f.choice > 0 {
			name = choiceName(t, f)
		}
		w.fail("required", "missing required member "+strconv.Quote(name))
	}
}

// choiceName is the FHIR name of f's choice element ("value[x]").
func choiceName(t *typeDef, f *fieldDef) string {
	base := ""
	for i := t.first; i < t.first+t.n; i++ {
		g := &fieldTable[i]
		if g.choice == f.choice && g != f {
			base = choiceBase(f.name, g.name)
		}
	}
	if base == "" { // a one-type choice: cut before the type's capital
		base = f.name
		for j := len(base) - 1; j > 0; j-- {
			if base[j] >= 'A' && base[j] <= 'Z' {
				base = base[:j]
				break
			}
		}
	}
	return base + "[x]"
}

// align checks that each primitive array and its _array have the same
// length, and that a null in one is matched by a value in the other: the
// only place FHIR JSON allows null.
func (w *walker) align(lens []arrayLen) {
	for i := range lens {
		a := &lens[i]
		var other *arrayLen
		for j := range lens {
			if j != i && lens[j].field == a.field {
				other = &lens[j]
			}
		}
		name := fieldTable[a.field].name
		if a.ext {
			if other == nil && a.hasNull {
				mark := w.pushField([]byte("_" + name))
				for k, isNull := range w.nulls(a.start) {
					if isNull {
						im := w.pushIndex(k)
						w.fail("structure", "null in \"_"+name+"\" without a matching \""+name+"\" element")
						w.path = w.path[:im]
					}
				}
				w.path = w.path[:mark]
			}
			continue
		}
		mark := w.pushField([]byte(name))
		switch {
		case other != nil && other.n != a.n:
			w.fail("structure", "\""+name+"\" has "+strconv.Itoa(a.n)+" elements but \"_"+name+"\" has "+strconv.Itoa(other.n))
		case a.hasNull || other != nil && other.hasNull:
			na := w.nulls(a.start)
			var nb []bool
			if other != nil {
				nb = w.nulls(other.start)
			}
			for k := range na {
				if !na[k] || nb != nil && !nb[k] {
					continue
				}
				im := w.pushIndex(k)
				if nb == nil {
					w.fail("structure", "null in \""+name+"\" without a matching \"_"+name+"\" element")
				} else {
					w.fail("structure", "null in both \""+name+"\" and \"_"+name+"\"")
				}
				w.path = w.path[:im]
			}
		}
		w.path = w.path[:mark]
	}
}

// nulls reports which elements of the array at offset start are null. Only
// arrays holding a null (rare) get here, so it may allocate.
func (w *walker) nulls(start int) []bool {
	save := w.pos
	w.pos = start + 1
	var out []bool
	for w.nextElement() {
		out = append(out, w.data[w.pos] == 'n')
		w.skipValue()
	}
	w.pos = save
	return out
}

// value checks the member value at w.pos against f; ext is true for the
// _name sibling holding a primitive's id and extensions. For an array it
// returns the length and whether it holds a null.
func (w *walker) value(f *fieldDef, ext bool) (n int, hasNull bool) {
	if !f.array() {
		if w.data[w.pos] == '[' {
			w.fail("structure", "expected a single value, not an array")
			w.skipValue()
			return 0, false
		}
		w.element(f, ext)
		return 0, false
	}
	if w.data[w.pos] != '[' {
		w.fail("structure", "expected an array")
		w.skipValue()
		return 0, false
	}
	contained := f.kind == kResource && f.name == "contained"
	if contained && w.inContained {
		w.fail("invariant", "dom-2: a contained resource cannot itself contain resources")
	}
	var idBuf [8]idSpan
	ids := idBuf[:0] // the contained resources' ids, to find duplicates
	w.pos++
	for w.nextElement() {
		mark := w.pushIndex(n)
		if contained && w.data[w.pos] == '{' {
			ids = w.containedID(ids, n)
		}
		if w.data[w.pos] == 'n' {
			w.pos += 4
			hasNull = true
			if !f.kind.primitive() {
				w.fail("structure", "null is only allowed in arrays of primitives, to line up with their _ arrays")
			}
		} else {
			w.element(f, ext)
		}
		w.path = w.path[:mark]
		n++
	}
	return n, hasNull
}

// element checks one (non-array, non-null) value.
func (w *walker) element(f *fieldDef, ext bool) {
	c := w.data[w.pos]
	switch {
	case ext:
		if c != '{' {
			w.fail("structure", "expected an object holding the primitive's id and extensions")
			w.skipValue()
			return
		}
		w.primitiveExtensions()
	case f.kind == kComplex:
		if c != '{' {
			w.fail("structure", "expected an object ("+typeTable[f.typ].name+")")
			w.skipValue()
			return
		}
		w.object(int(f.typ), f.refs)
	case f.kind == kResource:
		if c != '{' {
			w.fail("structure", "expected a resource object")
			w.skipValue()
			return
		}
		save := w.inContained
		w.inContained = f.name == "contained"
		w.resource()
		w.inContained = save
	default:
		if c == '{' {
			w.fail("structure", "expected a "+f.kind.String()+" value, not an object (its id and extensions go in \"_"+lastName(w.path)+"\")")
			w.skipValue()
			return
		}
		w.primitive(f)
	}
}

// lastName is the last member name of path, without an index.
func lastName(path []byte) string {
	end := len(path)
	for end > 0 && path[end-1] == ']' {
		for end > 0 && path[end-1] != '[' {
			end--
		}
		end--
	}
	start := end
	for start > 0 && path[start-1] != '.' {
		start--
	}
	if end < start {
		return ""
	}
	return string(path[start:end])
}

var extensionType = typeIndex("Extension")

// primitiveExtensions checks a _name object: only id and extension.
func (w *walker) primitiveExtensions() {
	w.pos++
	for {
		key, ok := w.nextMember()
		if !ok {
			return
		}
		mark := w.pushField(key)
		switch string(key) {
		case "id":
			w.primitive(&idField)
		case "extension":
			w.value(&extensionField, false)
		default:
			w.fail("structure", "unknown member "+strconv.Quote(string(key))+": a primitive's _ object holds only id and extension")
			w.skipValue()
		}
		w.path = w.path[:mark]
	}
}

var (
	idField        = fieldDef{name: "id", kind: kString}
	extensionField = fieldDef{name: "extension", kind: kComplex, typ: uint16(extensionType), flags: fArray}
)
