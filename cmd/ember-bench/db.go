package main

import (
	"context"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/emberfhir/ember/store"
)

// The bench reads a few figures straight from the server's embedded
// PostgreSQL (PGDATA is <data-dir>/postgres). It finds the socket the way
// pg_ctl does, from postmaster.pid, which also covers the short hashed
// socket directory pgcluster uses when <data-dir>/postgres/run is too long.

// pgdata is the embedded cluster's data directory.
func (e *env) pgdata() string { return filepath.Join(e.dataDir, "postgres") }

// databaseURL is the server's database on its private socket.
func (e *env) databaseURL() (string, error) {
	pidFile := filepath.Join(e.pgdata(), "postmaster.pid")
	b, err := os.ReadFile(pidFile)
	if err != nil {
		return "", fmt.Errorf("embedded PostgreSQL: %w", err)
	}
	// Lines: pid, data dir, start time, port, socket directory, listen address, …
	lines := strings.Split(string(b), "\n")
	if len(lines) < 5 || strings.TrimSpace(lines[4]) == "" {
		return "", fmt.Errorf("embedded PostgreSQL: %s names no socket directory", pidFile)
	}
	q := url.Values{"host": {strings.TrimSpace(lines[4])}, "port": {strings.TrimSpace(lines[3])}}
	u := url.URL{Scheme: "postgres", User: url.User("postgres"), Path: "/ember", RawQuery: q.Encode()}
	return u.String(), nil
}

// openStore opens the server's database for the few figures the bench reads.
func (e *env) openStore(ctx context.Context) (*store.Store, error) {
	u, err := e.databaseURL()
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	st, err := store.Open(ctx, u, store.Options{MaxConns: 1})
	if err != nil {
		return nil, fmt.Errorf("connecting to %s: %w", u, err)
	}
	return st, nil
}

func (e *env) storage(ctx context.Context) (store.Sizes, error) {
	st, err := e.openStore(ctx)
	if err != nil {
		return store.Sizes{}, err
	}
	defer st.Close()
	return st.Sizes(ctx)
}

// vacuumAnalyze brings the tables to the state autovacuum reaches shortly
// after a bulk load (planner statistics, visibility map), so the searches
// that follow measure the steady state rather than the minute after the load.
func (e *env) vacuumAnalyze(ctx context.Context) (time.Duration, error) {
	st, err := e.openStore(ctx)
	if err != nil {
		return 0, err
	}
	defer st.Close()
	t := time.Now()
	if err := st.VacuumAnalyze(ctx); err != nil {
		return 0, err
	}
	return time.Since(t), nil
}

// logSlowStatements makes PostgreSQL log every statement slower than d,
// with its parameters, to <data-dir>/postgres/postgres.log (-slowlog).
func (e *env) logSlowStatements(ctx context.Context, d time.Duration) error {
	st, err := e.openStore(ctx)
	if err != nil {
		return err
	}
	defer st.Close()
	if err := st.LogSlowStatements(ctx, d); err != nil {
		return fmt.Errorf("-slowlog: %w", err)
	}
	return nil
}

// postgresCPU sums the user+system CPU time of every postgres process on
// the machine (from /proc), to split a scenario's CPU between PostgreSQL
// and Ember. Processes that exit in between are not counted; the bench's
// own connections stay open across a measurement.
func postgresCPU() time.Duration {
	ents, _ := os.ReadDir("/proc")
	var ticks int64
	for _, e := range ents {
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue
		}
		// pid (comm) state … utime stime are fields 14 and 15; comm may hold spaces.
		s := string(b)
		open, close := strings.IndexByte(s, '('), strings.LastIndexByte(s, ')')
		if open < 0 || close < open || s[open+1:close] != "postgres" {
			continue
		}
		f := strings.Fields(s[close+1:])
		if len(f) < 13 {
			continue
		}
		u, _ := strconv.ParseInt(f[11], 10, 64)
		st, _ := strconv.ParseInt(f[12], 10, 64)
		ticks += u + st
	}
	return time.Duration(ticks) * 10 * time.Millisecond // USER_HZ is 100 on Linux
}

// processCPU is this process's user+system CPU time so far.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
