package main_test

import (
	"os"
	"regexp"
	"strings"
	"testing"
)

// TestServeFlagsDocumented: every flag of `ember serve` names its EMBER_
// environment variable in its help, and README's flag table has a row for
// both (a fixed contract: every flag has an EMBER_… variable).
func TestServeFlagsDocumented(t *testing.T) {
	out, _ := ember(t, nil, "serve", "--help")
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	flagLine := regexp.MustCompile(`^  -([a-z0-9-]+)`)
	envName := regexp.MustCompile(`\benv (EMBER_[A-Z0-9_]+)`)
	lines := strings.Split(out, "\n")
	flags := 0
	for i, l := range lines {
		m := flagLine.FindStringSubmatch(l)
		if m == nil {
			continue
		}
		flags++
		help := l
		for j := i + 1; j < len(lines) && strings.HasPrefix(lines[j], "    "); j++ {
			help += " " + lines[j]
		}
		name := m[1]
		e := envName.FindStringSubmatch(help)
		if e == nil {
			t.Errorf("--%s: its help names no EMBER_ environment variable", name)
			continue
		}
		if !strings.Contains(string(readme), "`--"+name+"`") || !strings.Contains(string(readme), "`"+e[1]+"`") {
			t.Errorf("--%s (%s) has no row in README's flag table", name, e[1])
		}
	}
	if flags < 30 {
		t.Fatalf("read %d flags from `ember serve --help`, expected more:\n%s", flags, out)
	}
}
