// Command composecheck loads a compose file as docker compose does (the
// compose-spec schema, interpolation, merge keys, references between
// services) and prints the resolved project, or exits 1 with the first
// error: `docker compose config` without Docker, for deploy's tests.
//
// A module of its own (github.com/compose-spec/compose-go/v2 at a pinned
// version), so Ember's go.mod carries none of it.
package main

import (
	"context"
	"fmt"
	"os"

	"github.com/compose-spec/compose-go/v2/cli"
)

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: composecheck compose.yaml")
		os.Exit(2)
	}
	opts, err := cli.NewProjectOptions([]string{os.Args[1]}, cli.WithOsEnv, cli.WithDotEnv, cli.WithName("ember"))
	if err != nil {
		fail(err)
	}
	p, err := opts.LoadProject(context.Background())
	if err != nil {
		fail(err)
	}
	out, err := p.MarshalYAML()
	if err != nil {
		fail(err)
	}
	os.Stdout.Write(out)
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, err)
	os.Exit(1)
}
