// Command withdb runs a command with EMBER_TEST_DATABASE_URL pointing at a
// throwaway PostgreSQL server, so a whole `go test ./...` shares one server:
//
//	go run ./internal/pgtest/withdb -- go test ./...
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"syscall"

	"github.com/emberfhir/ember/internal/pgtest"
)

func main() { os.Exit(run()) }

func run() int {
	args := os.Args[1:]
	if len(args) > 0 && args[0] == "--" {
		args = args[1:]
	}
	if len(args) == 0 {
		fmt.Fprintln(os.Stderr, "usage: withdb -- command [args...]")
		return 2
	}
	if os.Getenv("EMBER_TEST_DATABASE_URL") != "" {
		return runCmd(args) // a server was provided: use it as is
	}
	url, stop, err := pgtest.StartServer(context.Background())
	if err != nil {
		fmt.Fprintf(os.Stderr, "withdb: cannot start PostgreSQL for the tests: %v\n", err)
		return 1
	}
	defer stop()
	os.Setenv("EMBER_TEST_DATABASE_URL", url)
	return runCmd(args)
}

// runCmd runs args with our stdio, forwarding interrupts so the child can
// clean up before this process stops the server.
func runCmd(args []string) int {
	cmd := exec.Command(args[0], args[1:]...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
	defer signal.Stop(sig)
	if err := cmd.Start(); err != nil {
		fmt.Fprintf(os.Stderr, "withdb: %v\n", err)
		return 1
	}
	go func() {
		for s := range sig {
			_ = cmd.Process.Signal(s)
		}
	}()
	err := cmd.Wait()
	var exit *exec.ExitError
	if errors.As(err, &exit) {
		return exit.ExitCode()
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "withdb: %v\n", err)
		return 1
	}
	return 0
}
