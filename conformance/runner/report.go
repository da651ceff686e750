package runner

import (
	"encoding/xml"
	"fmt"
	"io"
	"strings"
)

// WriteSummary prints one line per check (failures with their request and
// skips with their reason), then the totals.
func (r *Report) WriteSummary(w io.Writer) error {
	var b strings.Builder
	fmt.Fprintf(&b, "conformance run against %s\n", r.Base)
	group := ""
	for _, x := range r.Results {
		if g := x.Suite + " / " + x.Group; g != group {
			group = g
			fmt.Fprintf(&b, "\n%s\n", g)
		}
		fmt.Fprintf(&b, "  %-4s  %s", strings.ToUpper(string(x.Status)), x.Name)
		if x.Message != "" {
			fmt.Fprintf(&b, ": %s", x.Message)
		}
		b.WriteByte('\n')
		if x.Request != "" {
			fmt.Fprintf(&b, "        request: %s\n", x.Request)
		}
	}
	pass, fail, skip := r.Count(Pass), r.Count(Fail), r.Count(Skip)
	pct := 100.0
	if pass+fail > 0 {
		pct = 100 * float64(pass) / float64(pass+fail)
	}
	fmt.Fprintf(&b, "\n%d passed, %d failed, %d skipped (%.1f%% of applicable checks passed) in %s\n",
		pass, fail, skip, pct, r.Elapsed.Round(1e6))
	_, err := io.WriteString(w, b.String())
	return err
}

// The JUnit XML schema as CI systems read it: one testsuite per suite and
// group, one testcase per check.
type junitSuites struct {
	XMLName  xml.Name     `xml:"testsuites"`
	Name     string       `xml:"name,attr"`
	Tests    int          `xml:"tests,attr"`
	Failures int          `xml:"failures,attr"`
	Skipped  int          `xml:"skipped,attr"`
	Time     float64      `xml:"time,attr"`
	Suites   []junitSuite `xml:"testsuite"`
}

type junitSuite struct {
	Name     string      `xml:"name,attr"`
	Tests    int         `xml:"tests,attr"`
	Failures int         `xml:"failures,attr"`
	Skipped  int         `xml:"skipped,attr"`
	Time     float64     `xml:"time,attr"`
	Cases    []junitCase `xml:"testcase"`
}

type junitCase struct {
	Name      string        `xml:"name,attr"`
	Classname string        `xml:"classname,attr"`
	Time      float64       `xml:"time,attr"`
	Failure   *junitMessage `xml:"failure,omitempty"`
	Skipped   *junitMessage `xml:"skipped,omitempty"`
}

type junitMessage struct {
	Message string `xml:"message,attr"`
	Text    string `xml:",chardata"`
}

// WriteJUnit writes the report as JUnit XML.
func (r *Report) WriteJUnit(w io.Writer) error {
	out := junitSuites{Name: "ember conformance " + r.Base, Time: r.Elapsed.Seconds()}
	index := map[string]int{}
	for _, x := range r.Results {
		name := x.Suite + "." + x.Group
		i, ok := index[name]
		if !ok {
			i = len(out.Suites)
			index[name] = i
			out.Suites = append(out.Suites, junitSuite{Name: name})
		}
		s := &out.Suites[i]
		c := junitCase{Name: x.Name, Classname: name, Time: x.Elapsed.Seconds()}
		switch x.Status {
		case Fail:
			text := x.Message
			if x.Request != "" {
				text += "\nrequest: " + x.Request
			}
			c.Failure = &junitMessage{Message: x.Message, Text: text}
			s.Failures++
			out.Failures++
		case Skip:
			c.Skipped = &junitMessage{Message: x.Message}
			s.Skipped++
			out.Skipped++
		}
		s.Tests++
		s.Time += c.Time
		out.Tests++
		s.Cases = append(s.Cases, c)
	}
	if _, err := io.WriteString(w, xml.Header); err != nil {
		return err
	}
	enc := xml.NewEncoder(w)
	enc.Indent("", "  ")
	if err := enc.Encode(out); err != nil {
		return err
	}
	_, err := io.WriteString(w, "\n")
	return err
}
