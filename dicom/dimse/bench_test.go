package dimse

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
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
		t.Skip("throughput measurement")
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

	// Four concurrent associations.
	h.n.Store(0)
	start = time.Now()
	var wg sync.WaitGroup
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if out, ok := dcmtk(t, addr, "storescu", append(storescuConfig(t, files[:1]), "+sd"), dir); !ok {
				t.Errorf("storescu: %s", out)
			}
		}()
	}
	wg.Wait()
	elapsed = time.Since(start)
	if got := h.n.Load(); got != 4*n {
		t.Fatalf("stored %d of %d", got, 4*n)
	}
	t.Logf("storescu: %d instances over 4 associations in %v (%.0f/s)", 4*n, elapsed.Round(time.Millisecond), float64(4*n)/elapsed.Seconds())
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
