package dimse

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// Benchmarks of the provider alone: a Go SCU stores over loopback into a
// handler that reads and discards each data set.

func benchServer(b *testing.B) string {
	s, err := NewServer(Config{Handler: discardHandler{}, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		b.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { s.Serve(ctx, ln); close(done) }()
	b.Cleanup(func() { cancel(); <-done })
	return ln.Addr().String()
}

func benchStore(b *testing.B, size, conns int) {
	addr := benchServer(b)
	data := make([]byte, size)
	b.SetBytes(int64(size))
	b.ReportAllocs()
	scus := make([]*scu, conns)
	for i := range scus {
		scus[i], _ = dialSCU(b, addr, "BENCH", pcs(uidCTImage))
	}
	b.ResetTimer()
	var wg sync.WaitGroup
	per := b.N / conns
	for i, s := range scus {
		n := per
		if i == 0 {
			n += b.N % conns
		}
		// The association was dialled on this goroutine; its Fatal calls
		// from now on happen on the worker's.
		s.t = goroutineTB{b}
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range n {
				if st := s.store(1, uidCTImage, fmt.Sprintf("1.2.3.%d.%d", i, j), data); st != StatusSuccess {
					b.Errorf("status 0x%04x", st)
					return
				}
			}
		}()
	}
	wg.Wait()
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "instances/s")
	for _, s := range scus {
		s.release()
	}
}

func BenchmarkStore16K(b *testing.B)       { benchStore(b, 16<<10, 1) }
func BenchmarkStore16KConns4(b *testing.B) { benchStore(b, 16<<10, 4) }
func BenchmarkStore512K(b *testing.B)      { benchStore(b, 512<<10, 1) }

// TestStorescuThroughput measures storescu sending many small files over
// one association (logged; the assertion is a loose floor far below the
// product target, so only a gross regression fails it).
func TestStorescuThroughput(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: sends 500 files to measure throughput")
	}
	src := filepath.Join(pydicomSamples(t), "MR_small.dcm")
	dir := t.TempDir()
	const n = 500
	var files []string
	for i := range n {
		f := filepath.Join(dir, fmt.Sprintf("%04d.dcm", i))
		if err := os.Symlink(src, f); err != nil {
			t.Fatal(err)
		}
		files = append(files, f)
	}
	h := &countingHandler{}
	addr, _, _ := startServer(t, Config{Handler: h})
	start := time.Now()
	if out, ok := dcmtk(t, addr, "storescu", append(storescuConfig(t, files[:1]), "+sd"), dir); !ok {
		t.Fatalf("storescu: %s", out)
	}
	elapsed := time.Since(start)
	if got := h.n.Load(); got != n {
		t.Fatalf("stored %d of %d", got, n)
	}
	rate := float64(n) / elapsed.Seconds()
	t.Logf("storescu: %d instances over one association in %v (%.0f/s)", n, elapsed.Round(time.Millisecond), rate)
	if rate < 200 {
		t.Errorf("%.0f instances/s: the provider alone should far exceed the 600/s product target", rate)
	}

	// Four concurrent associations. dcmtk and storescuConfig may end the
	// test (Skip, Fatal), which only the test goroutine may do: they run
	// here, and the goroutines report their errors back.
	opts := append(storescuConfig(t, files[:1]), "+sd")
	storescu, err := exec.LookPath("storescu")
	if err != nil {
		t.Fatal(err) // the first run found it
	}
	h.n.Store(0)
	start = time.Now()
	errs := make(chan error, 4)
	for range 4 {
		go func() { errs <- runStorescu(storescu, addr, opts, dir) }()
	}
	for range 4 {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
	elapsed = time.Since(start)
	if got := h.n.Load(); got != 4*n {
		t.Fatalf("stored %d of %d", got, 4*n)
	}
	t.Logf("storescu: %d instances over 4 associations in %v (%.0f/s)", 4*n, elapsed.Round(time.Millisecond), float64(4*n)/elapsed.Seconds())
}

// runStorescu runs storescu with opts against addr, sending dir; safe off
// the test goroutine.
func runStorescu(path, addr string, opts []string, dir string) error {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, path, append(append(append([]string{}, opts...), host, port), dir)...)
	cmd.Env = append(os.Environ(), "TCP_NODELAY=1")
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("storescu: %w: %s", err, out)
	}
	return nil
}

// goroutineTB is the TB of code running off the benchmark's goroutine:
// Fatal and FailNow, which may only be called on that goroutine, record
// the failure and end the calling goroutine (its defers run) instead.
type goroutineTB struct{ testing.TB }

func (g goroutineTB) FailNow() { g.Fail(); runtime.Goexit() }

func (g goroutineTB) Fatal(args ...any) { g.Helper(); g.Error(args...); runtime.Goexit() }

func (g goroutineTB) Fatalf(format string, args ...any) {
	g.Helper()
	g.Errorf(format, args...)
	runtime.Goexit()
}

type countingHandler struct{ n atomic.Int64 }

func (h *countingHandler) CStore(ctx context.Context, req *StoreRequest) (uint16, error) {
	_, err := io.Copy(io.Discard, req.Dataset)
	h.n.Add(1)
	return StatusSuccess, err
}

func (*countingHandler) CFind(ctx context.Context, req *FindRequest, emit func(FindMatch) error) (uint16, error) {
	return StatusSuccess, nil
}
