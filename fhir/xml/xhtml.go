package xml

import (
	"bytes"
	stdxml "encoding/xml"
	"errors"
	"fmt"
	"io"
	"unicode/utf8"
)

// Narrative (Narrative.div) is XHTML: in JSON a string holding the div
// element, in XML the element itself in the XHTML namespace. Written as is
// when checkDiv finds it self-contained, so both directions keep its exact
// text; otherwise rewritten from its tokens.

const namespaceXML = "http://www.w3.org/XML/1998/namespace"

// appendDiv appends the narrative s as an XHTML div element.
func appendDiv(dst, s []byte) ([]byte, error) {
	if checkDiv(s) == nil {
		return append(dst, s...), nil
	}
	// Not self-contained (no xmlns, HTML entities, prefixes): rewrite it.
	d := stdxml.NewDecoder(bytes.NewReader(s))
	d.Strict = true
	d.Entity = stdxml.HTMLEntity
	out, err := rewriteDiv(dst, d.Token, true)
	for err == nil {
		var tok stdxml.Token
		if tok, err = d.Token(); err == io.EOF {
			return out, nil
		}
		if cd, ok := tok.(stdxml.CharData); err == nil && (!ok || len(bytes.TrimSpace(cd)) > 0) {
			err = errors.New("content after the div")
		}
	}
	return dst, fmt.Errorf("narrative is not well-formed XHTML: %w", err)
}

// rewriteDiv writes the div element whose tokens next returns as XHTML in
// its namespace. lenient accepts elements in no namespace (a JSON narrative
// without xmlns).
func rewriteDiv(dst []byte, next func() (stdxml.Token, error), lenient bool) ([]byte, error) {
	inNS := func(n stdxml.Name) bool {
		return n.Space == NamespaceXHTML || lenient && n.Space == ""
	}
	depth := 0
	for {
		tok, err := next()
		if err != nil {
			if err == io.EOF {
				err = errors.New("unexpected end")
			}
			return dst, err
		}
		switch t := tok.(type) {
		case stdxml.StartElement:
			if !inNS(t.Name) {
				return dst, fmt.Errorf("element %q is not XHTML", t.Name.Local)
			}
			if depth == 0 && t.Name.Local != "div" {
				return dst, fmt.Errorf("the narrative is a %q element, not a div", t.Name.Local)
			}
			dst = append(dst, '<')
			dst = append(dst, t.Name.Local...)
			if depth == 0 {
				dst = append(dst, ` xmlns="`+NamespaceXHTML+`"`...)
			}
			for _, a := range t.Attr {
				switch {
				case a.Name.Space == "xmlns" || a.Name.Space == "" && a.Name.Local == "xmlns":
					continue // declarations: the names are resolved
				case a.Name.Space == namespaceXML || a.Name.Space == "xml":
					dst = append(dst, " xml:"...)
				case a.Name.Space == "":
					dst = append(dst, ' ')
				default:
					return dst, fmt.Errorf("attribute %q is in namespace %q", a.Name.Local, a.Name.Space)
				}
				dst = append(dst, a.Name.Local...)
				dst = append(dst, '=', '"')
				var err error
				if dst, err = escapeAttr(dst, []byte(a.Value)); err != nil {
					return dst, err
				}
				dst = append(dst, '"')
			}
			dst = append(dst, '>')
			depth++
		case stdxml.EndElement:
			dst = append(dst, '<', '/')
			dst = append(dst, t.Name.Local...)
			dst = append(dst, '>')
			depth--
			if depth == 0 {
				return dst, nil
			}
		case stdxml.CharData:
			if depth == 0 {
				if len(bytes.TrimSpace(t)) > 0 {
					return dst, errors.New("text outside the div")
				}
				continue
			}
			dst = escapeText(dst, t)
		case stdxml.Comment:
			if depth > 0 {
				dst = append(dst, "<!--"...)
				dst = append(dst, t...)
				dst = append(dst, "-->"...)
			}
		case stdxml.ProcInst:
			return dst, errors.New("processing instructions are not allowed in narrative")
		case stdxml.Directive:
			return dst, errors.New("DTDs are not allowed")
		}
	}
}

func escapeText(dst, s []byte) []byte {
	start := 0
	for i, c := range s {
		var esc string
		switch c {
		case '&':
			esc = "&amp;"
		case '<':
			esc = "&lt;"
		case '>':
			esc = "&gt;"
		case '\r':
			esc = "&#13;"
		default:
			continue
		}
		dst = append(dst, s[start:i]...)
		dst = append(dst, esc...)
		start = i + 1
	}
	return append(dst, s[start:]...)
}

// checkDiv reports whether s is one div element that can be copied into an
// XML document as it is: well-formed, declaring the XHTML namespace as its
// default, with no prefixed element names (whose declaration could be
// outside), only XML's predefined and numeric character references, no
// DTD or processing instruction, only characters XML 1.0 allows. It is the
// fast path of every XML read of a resource with narrative, hence by hand.
func checkDiv(s []byte) error {
	if !utf8.Valid(s) {
		return errors.New("invalid UTF-8")
	}
	if !bytes.HasPrefix(s, []byte("<div")) {
		return errors.New("the narrative does not start with <div")
	}
	var stackBuf [32][2]int32
	stack := stackBuf[:0] // open elements' names as offsets into s
	rootNS := false
	i := 0
	for i < len(s) {
		c := s[i]
		switch {
		case c == '<':
			rest := s[i:]
			switch {
			case bytes.HasPrefix(rest, []byte("<!--")):
				end := bytes.Index(rest[4:], []byte("--"))
				if end < 0 || !bytes.HasPrefix(rest[4+end:], []byte("-->")) {
					return errors.New("malformed comment")
				}
				if err := checkChars(rest[4 : 4+end]); err != nil {
					return err
				}
				i += 4 + end + 3
			case bytes.HasPrefix(rest, []byte("<![CDATA[")):
				end := bytes.Index(rest, []byte("]]>"))
				if end < 0 || len(stack) == 0 {
					return errors.New("malformed CDATA section")
				}
				if err := checkChars(rest[9:end]); err != nil {
					return err
				}
				i += end + 3
			case bytes.HasPrefix(rest, []byte("<!")) || bytes.HasPrefix(rest, []byte("<?")):
				return errors.New("DTDs and processing instructions are not allowed")
			case bytes.HasPrefix(rest, []byte("</")):
				n := nameEnd(s, i+2)
				if n == i+2 || len(stack) == 0 {
					return errors.New("unexpected end tag")
				}
				top := stack[len(stack)-1]
				if !bytes.Equal(s[i+2:n], s[top[0]:top[1]]) {
					return fmt.Errorf("end tag </%s> does not match <%s>", s[i+2:n], s[top[0]:top[1]])
				}
				stack = stack[:len(stack)-1]
				j := skipSpace(s, n)
				if j >= len(s) || s[j] != '>' {
					return errors.New("malformed end tag")
				}
				i = j + 1
				if len(stack) == 0 {
					if i != len(s) {
						return errors.New("content after the div")
					}
					if !rootNS {
						return errors.New("the div does not declare the XHTML namespace")
					}
					return nil
				}
			default:
				start := i + 1
				n := nameEnd(s, start)
				if n == start || bytes.IndexByte(s[i+1:n], ':') >= 0 {
					return errors.New("malformed or prefixed element name")
				}
				root := i == 0
				j, empty, ns, err := checkAttrs(s, n)
				if err != nil {
					return err
				}
				if ns != "" && ns != NamespaceXHTML {
					return errors.New("an element in another namespace")
				}
				if root {
					rootNS = ns == NamespaceXHTML
				}
				i = j
				if empty {
					if root {
						return errors.New("an empty div")
					}
					continue
				}
				stack = append(stack, [2]int32{int32(start), int32(n)})
			}
		case len(stack) == 0:
			return errors.New("content outside the div")
		case c == '&':
			j, err := checkRef(s, i)
			if err != nil {
				return err
			}
			i = j
		case c == '>' && i >= 2 && s[i-1] == ']' && s[i-2] == ']':
			return errors.New("]]> in text")
		case c < 0x20 && c != '\t' && c != '\n' && c != '\r':
			return fmt.Errorf("control character %U", rune(c))
		case c == 0xEF && i+2 < len(s) && s[i+1] == 0xBF && (s[i+2] == 0xBE || s[i+2] == 0xBF):
			return errors.New("U+FFFE or U+FFFF")
		default:
			i++
		}
	}
	return errors.New("the div is not closed")
}

// checkAttrs reads a start tag's attributes from s[i] to its '>' or '/>'. It
// returns the offset past the tag, whether it was empty, and the value of a
// default namespace declaration.
func checkAttrs(s []byte, i int) (next int, empty bool, ns string, err error) {
	var names [16][2]int
	seen := names[:0]
	for {
		j := skipSpace(s, i)
		if j >= len(s) {
			return 0, false, "", errors.New("unterminated start tag")
		}
		if s[j] == '>' {
			return j + 1, false, ns, nil
		}
		if s[j] == '/' {
			if j+1 < len(s) && s[j+1] == '>' {
				return j + 2, true, ns, nil
			}
			return 0, false, "", errors.New("malformed start tag")
		}
		if j == i {
			return 0, false, "", errors.New("attributes must be separated by spaces")
		}
		n := nameEnd(s, j)
		if n == j {
			return 0, false, "", errors.New("malformed attribute name")
		}
		name := s[j:n]
		if k := bytes.IndexByte(name, ':'); k >= 0 && string(name[:k]) != "xml" && string(name[:k]) != "xmlns" {
			return 0, false, "", fmt.Errorf("attribute %q has a prefix", name)
		}
		for _, p := range seen {
			if bytes.Equal(s[p[0]:p[1]], name) {
				return 0, false, "", fmt.Errorf("attribute %q repeated", name)
			}
		}
		seen = append(seen, [2]int{j, n})
		j = skipSpace(s, n)
		if j >= len(s) || s[j] != '=' {
			return 0, false, "", errors.New("attribute without a value")
		}
		j = skipSpace(s, j+1)
		if j >= len(s) || s[j] != '"' && s[j] != '\'' {
			return 0, false, "", errors.New("unquoted attribute value")
		}
		q := s[j]
		start := j + 1
		for j = start; j < len(s) && s[j] != q; {
			switch c := s[j]; {
			case c == '<':
				return 0, false, "", errors.New("< in an attribute value")
			case c == '&':
				if j, err = checkRef(s, j); err != nil {
					return 0, false, "", err
				}
			case c < 0x20 && c != '\t' && c != '\n' && c != '\r':
				return 0, false, "", fmt.Errorf("control character %U", rune(c))
			default:
				j++
			}
		}
		if j >= len(s) {
			return 0, false, "", errors.New("unterminated attribute value")
		}
		if string(name) == "xmlns" {
			ns = string(s[start:j])
			if ns != NamespaceXHTML {
				return 0, false, "", errors.New("an element in another namespace")
			}
		}
		i = j + 1
	}
}

// checkRef checks the character reference at s[i] ('&'): XML's five named
// ones or a numeric reference to a character XML allows.
func checkRef(s []byte, i int) (int, error) {
	end := bytes.IndexByte(s[i:min(len(s), i+12)], ';')
	if end < 0 {
		return 0, errors.New("malformed character reference")
	}
	ref := s[i+1 : i+end]
	switch string(ref) {
	case "lt", "gt", "amp", "quot", "apos":
		return i + end + 1, nil
	}
	if len(ref) < 2 || ref[0] != '#' {
		return 0, fmt.Errorf("entity &%s; is not defined in XML", ref)
	}
	r, base, digits := rune(0), rune(10), ref[1:]
	if digits[0] == 'x' {
		base, digits = 16, digits[1:]
	}
	if len(digits) == 0 {
		return 0, errors.New("malformed character reference")
	}
	for _, c := range digits {
		var d rune
		switch {
		case '0' <= c && c <= '9':
			d = rune(c - '0')
		case base == 16 && 'a' <= c && c <= 'f':
			d = rune(c-'a') + 10
		case base == 16 && 'A' <= c && c <= 'F':
			d = rune(c-'A') + 10
		default:
			return 0, errors.New("malformed character reference")
		}
		r = r*base + d
	}
	if !xmlChar(r) {
		return 0, fmt.Errorf("character reference to %U", r)
	}
	return i + end + 1, nil
}

// xmlChar reports whether XML 1.0 allows r.
func xmlChar(r rune) bool {
	return r == 0x9 || r == 0xA || r == 0xD || 0x20 <= r && r <= 0xD7FF ||
		0xE000 <= r && r <= 0xFFFD || 0x10000 <= r && r <= 0x10FFFF
}

func checkChars(s []byte) error {
	for _, r := range string(s) {
		if !xmlChar(r) {
			return fmt.Errorf("character %U", r)
		}
	}
	return nil
}

// nameEnd returns the end of the XML name at s[i] (i when there is none):
// ASCII name characters and any non-ASCII byte.
func nameEnd(s []byte, i int) int {
	j := i
	for j < len(s) {
		c := s[j]
		ok := 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || c == '_' || c == ':' || c >= 0x80 ||
			j > i && ('0' <= c && c <= '9' || c == '-' || c == '.')
		if !ok {
			break
		}
		j++
	}
	return j
}

func skipSpace(s []byte, i int) int {
	for i < len(s) && (s[i] == ' ' || s[i] == '\t' || s[i] == '\n' || s[i] == '\r') {
		i++
	}
	return i
}
