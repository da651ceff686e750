package main

import (
	"testing"
	"time"
)

func TestPercentile(t *testing.T) {
	var lat []time.Duration
	for i := 100; i >= 1; i-- { // unsorted on purpose: summarize must sort
		lat = append(lat, time.Duration(i)*time.Millisecond)
	}
	s := summarize(lat, 2*time.Second)
	if s.p50 != 50*time.Millisecond || s.p99 != 99*time.Millisecond {
		t.Errorf("p50, p99 = %v, %v; want 50ms, 99ms", s.p50, s.p99)
	}
	if s.throughput != 50 {
		t.Errorf("throughput = %v; want 50 (100 requests in 2 s)", s.throughput)
	}
	cases := []struct {
		n    int
		p    float64
		want time.Duration
	}{
		{1, 50, 1}, {1, 99, 1}, {2, 50, 1}, {2, 99, 2}, {10, 99, 10}, {200, 99, 198}, {0, 50, 0},
	}
	for _, c := range cases {
		sorted := make([]time.Duration, c.n)
		for i := range sorted {
			sorted[i] = time.Duration(i + 1)
		}
		if got := percentile(sorted, c.p); got != c.want {
			t.Errorf("percentile(1..%d, %v) = %v; want %v", c.n, c.p, got, c.want)
		}
	}
}

func TestRate(t *testing.T) {
	if got := rate(2500, 500*time.Millisecond); got != 5000 {
		t.Errorf("rate(2500, 500ms) = %v; want 5000", got)
	}
	if got := rate(10, 0); got != 0 {
		t.Errorf("rate(10, 0) = %v; want 0", got)
	}
	if got := ms(1500 * time.Microsecond); got != 1.5 {
		t.Errorf("ms(1.5ms) = %v; want 1.5", got)
	}
}
