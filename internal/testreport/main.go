// Command testreport runs a `go test -json` command (or reads such output on
// stdin) and prints what a person wants from it: each failure with its
// output, one line per package, then a closing line
//
//	N passed, N failed, N skipped
//
// and every skipped test with its reason. It exits 1 when a test or a
// package failed (build failures and crashed test binaries included), when
// the command itself failed, and — with -fail-on-skip, the default under
// CI=true — when any test skipped.
//
// Usage:
//
//	go run ./internal/testreport [-fail-on-skip] -- go test -json ./...
//	go test -json ./... | go run ./internal/testreport
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"strconv"
)

func main() {
	ci, _ := strconv.ParseBool(os.Getenv("CI"))
	failOnSkip := flag.Bool("fail-on-skip", ci, "fail the run when any test skipped (default true under CI=true)")
	flag.Usage = func() {
		fmt.Fprintln(os.Stderr, "usage: testreport [-fail-on-skip] [-- go test -json ...]")
		flag.PrintDefaults()
	}
	flag.Parse()
	os.Exit(run(flag.Args(), *failOnSkip, os.Stdin, os.Stdout, os.Stderr))
}

// run reports on the output of the command args (or of stdin when args is
// empty) and returns the exit code.
func run(args []string, failOnSkip bool, stdin io.Reader, stdout, stderr io.Writer) int {
	in := stdin
	var cmd *exec.Cmd
	if len(args) > 0 {
		cmd = exec.Command(args[0], args[1:]...)
		cmd.Stdin, cmd.Stderr = stdin, stderr
		pipe, err := cmd.StdoutPipe()
		if err != nil {
			fmt.Fprintf(stderr, "testreport: %v\n", err)
			return 1
		}
		if err := cmd.Start(); err != nil {
			fmt.Fprintf(stderr, "testreport: start %s: %v\n", args[0], err)
			return 1
		}
		in = pipe
		// ^C reaches the whole process group: let the command stop and
		// still report what ran.
		signal.Notify(make(chan os.Signal, 1), os.Interrupt)
	}

	r := newReport(stdout)
	readErr := r.read(in)
	r.end()
	var cmdErr error
	if cmd != nil {
		if readErr != nil {
			_, _ = io.Copy(io.Discard, in) // let the command finish writing
		}
		cmdErr = cmd.Wait()
	}
	r.summary()

	code := 0
	if readErr != nil {
		fmt.Fprintf(stderr, "testreport: %v\n", readErr)
		code = 1
	}
	if cmdErr != nil {
		// go test exits 1 on test failures, already reported; any other
		// failure (a bad pattern, the wrapper unable to start PostgreSQL)
		// is only visible here.
		var exit *exec.ExitError
		if !errors.As(cmdErr, &exit) || r.ok(false) {
			fmt.Fprintf(stderr, "testreport: %s: %v\n", args[0], cmdErr)
		}
		code = 1
	}
	if !r.sawEvent {
		fmt.Fprintln(stderr, "testreport: no go test -json events: no test ran")
		code = 1
	}
	if !r.ok(failOnSkip) {
		code = 1
		if r.ok(false) {
			fmt.Fprintf(stderr, "testreport: %d tests skipped, and a skipped test counts as a failure here (-fail-on-skip, the default under CI=true)\n", r.skipped)
		}
	}
	return code
}
