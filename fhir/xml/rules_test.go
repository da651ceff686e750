package xml

import (
	"bytes"
	stdxml "encoding/xml"
	"fmt"
	"io"
	"testing"
)

// No FHIR R4 XML schema (fhir-all.xsd) can be obtained here: the npm
// package holds JSON only. checkRules therefore checks a document against
// the R4 XML rules (https://hl7.org/fhir/R4/xml.html) for every element
// kind, reading it with encoding/xml independently of Unmarshal:
//   - the root is a resource type in the FHIR namespace, every element is in
//     it except the narrative, a div in the XHTML namespace;
//   - a primitive has a value attribute and/or an id attribute and extension
//     children, nothing else, and no text;
//   - a complex element has no value attribute; id (and Extension.url) are
//     attributes exactly where the definitions say xmlAttr; no text;
//   - a resource container (contained, Bundle.entry.resource,
//     Parameters.parameter.resource) holds exactly one resource element;
//   - children follow the definition order, repeats are adjacent, and an
//     element that does not repeat appears once;
//   - no element is empty (no attributes and no children).
func checkRules(doc []byte) error {
	t, err := index()
	if err != nil {
		return err
	}
	d := stdxml.NewDecoder(bytes.NewReader(doc))
	d.Strict = true
	for {
		tok, err := d.Token()
		if err != nil {
			return fmt.Errorf("no root element: %v", err)
		}
		if se, ok := tok.(stdxml.StartElement); ok {
			x := t.resources[se.Name.Local]
			if x == nil || se.Name.Space != NamespaceFHIR {
				return fmt.Errorf("root <%s> (%s) is not a FHIR resource", se.Name.Local, se.Name.Space)
			}
			if err := ruleObject(d, t, se, x); err != nil {
				return err
			}
			break
		}
	}
	for {
		tok, err := d.Token()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
		if cd, ok := tok.(stdxml.CharData); !ok || len(bytes.TrimSpace(cd)) > 0 {
			return fmt.Errorf("content after the root: %T", tok)
		}
	}
}

func ruleObject(d *stdxml.Decoder, t *tables, start stdxml.StartElement, x *xtype) error {
	where := x.name
	attrs := 0
	for _, a := range start.Attr {
		if namespaceDecl(a) {
			continue
		}
		m := x.members[a.Name.Local]
		if m == nil || !m.attr || a.Name.Space != "" {
			return fmt.Errorf("%s: attribute %q is not an xmlAttr element", where, a.Name.Local)
		}
		attrs++
	}
	lastOrd, lastName, children := int32(-1), "", 0
	seen := map[string]bool{}
	for {
		tok, err := d.Token()
		if err != nil {
			return fmt.Errorf("%s: %v", where, err)
		}
		switch tk := tok.(type) {
		case stdxml.EndElement:
			if attrs == 0 && children == 0 {
				return fmt.Errorf("%s: empty element <%s/>", where, start.Name.Local)
			}
			return nil
		case stdxml.CharData:
			if len(bytes.TrimSpace(tk)) > 0 {
				return fmt.Errorf("%s: text content", where)
			}
		case stdxml.StartElement:
			children++
			name := tk.Name.Local
			m := x.members[name]
			if m == nil || m.attr {
				return fmt.Errorf("%s: <%s> is not an element of %s", where, name, x.name)
			}
			if m.ord < lastOrd {
				return fmt.Errorf("%s: <%s> comes after <%s>, against the definition order", where, name, lastName)
			}
			if name != lastName && seen[name] {
				return fmt.Errorf("%s: repeats of <%s> are not adjacent", where, name)
			}
			if name == lastName && !m.repeats {
				return fmt.Errorf("%s: <%s> does not repeat", where, name)
			}
			seen[name], lastOrd, lastName = true, m.ord, name
			wantNS := NamespaceFHIR
			if m.kind == kXHTML {
				wantNS = NamespaceXHTML
			}
			if tk.Name.Space != wantNS {
				return fmt.Errorf("%s: <%s> in namespace %q, want %s", where, name, tk.Name.Space, wantNS)
			}
			var err error
			switch m.kind {
			case kXHTML:
				if name != "div" {
					err = fmt.Errorf("narrative element <%s>", name)
				} else {
					err = d.Skip()
				}
			case kComplex:
				err = ruleObject(d, t, tk, m.typ)
			case kResource:
				err = ruleContainer(d, t, tk)
			default:
				err = rulePrimitive(d, t, tk)
			}
			if err != nil {
				return fmt.Errorf("%s.%w", where, err)
			}
		}
	}
}

func ruleContainer(d *stdxml.Decoder, t *tables, start stdxml.StartElement) error {
	if len(start.Attr) > 0 {
		return fmt.Errorf("%s: a resource container has attributes", start.Name.Local)
	}
	n := 0
	for {
		tok, err := d.Token()
		if err != nil {
			return err
		}
		switch tk := tok.(type) {
		case stdxml.EndElement:
			if n != 1 {
				return fmt.Errorf("%s holds %d resources, want 1", start.Name.Local, n)
			}
			return nil
		case stdxml.CharData:
			if len(bytes.TrimSpace(tk)) > 0 {
				return fmt.Errorf("%s: text content", start.Name.Local)
			}
		case stdxml.StartElement:
			n++
			x := t.resources[tk.Name.Local]
			if x == nil || tk.Name.Space != NamespaceFHIR {
				return fmt.Errorf("%s holds <%s>, not a resource", start.Name.Local, tk.Name.Local)
			}
			if err := ruleObject(d, t, tk, x); err != nil {
				return fmt.Errorf("%s.%w", start.Name.Local, err)
			}
		}
	}
}

func rulePrimitive(d *stdxml.Decoder, t *tables, start stdxml.StartElement) error {
	name := start.Name.Local
	content := false
	for _, a := range start.Attr {
		switch {
		case namespaceDecl(a):
		case a.Name.Space == "" && (a.Name.Local == "value" || a.Name.Local == "id"):
			content = true
			if a.Name.Local == "value" && a.Value == "" {
				return fmt.Errorf("%s: empty value attribute", name)
			}
		default:
			return fmt.Errorf("%s: attribute %q on a primitive", name, a.Name.Local)
		}
	}
	for {
		tok, err := d.Token()
		if err != nil {
			return err
		}
		switch tk := tok.(type) {
		case stdxml.EndElement:
			if !content {
				return fmt.Errorf("%s: a primitive without value, id or extension", name)
			}
			return nil
		case stdxml.CharData:
			if len(bytes.TrimSpace(tk)) > 0 {
				return fmt.Errorf("%s: text content %q", name, clip(string(tk)))
			}
		case stdxml.StartElement:
			if tk.Name.Local != "extension" || tk.Name.Space != NamespaceFHIR {
				return fmt.Errorf("%s: <%s> in a primitive", name, tk.Name.Local)
			}
			content = true
			if err := ruleObject(d, t, tk, t.extension); err != nil {
				return fmt.Errorf("%s.%w", name, err)
			}
		}
	}
}

// TestRulesCatchBreaks holds checkRules to each rule it states.
func TestRulesCatchBreaks(t *testing.T) {
	const ns = ` xmlns="http://hl7.org/fhir"`
	ok := `<Patient` + ns + `><id value="a"/><name id="n1"><given value="x"/></name></Patient>`
	if err := checkRules([]byte(ok)); err != nil {
		t.Fatalf("a conformant document: %v", err)
	}
	for name, doc := range map[string]string{
		"order":         `<Patient` + ns + `><name><given value="x"/></name><id value="a"/></Patient>`,
		"namespace":     `<Patient><id value="a"/></Patient>`,
		"text":          `<Patient` + ns + `><id value="a"/>x</Patient>`,
		"primitive":     `<Patient` + ns + `><id>a</id></Patient>`,
		"attr":          `<Patient` + ns + `><name><given value="x"/><id value="n"/></name></Patient>`,
		"resource id":   `<Patient` + ns + ` id="a"/>`,
		"empty":         `<Patient` + ns + `><name/></Patient>`,
		"not adjacent":  `<Patient` + ns + `><name><given value="x"/><family value="y"/><given value="z"/></name></Patient>`,
		"no repeat":     `<Patient` + ns + `><gender value="male"/><gender value="male"/></Patient>`,
		"container":     `<Patient` + ns + `><contained><id value="a"/></contained></Patient>`,
		"div namespace": `<Patient` + ns + `><text><status value="generated"/><div>x</div></text></Patient>`,
	} {
		if err := checkRules([]byte(doc)); err == nil {
			t.Errorf("%s: checkRules accepted %s", name, doc)
		}
	}
}
