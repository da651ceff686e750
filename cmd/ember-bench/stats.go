package main

import (
	"math"
	"slices"
	"time"
)

// percentile returns the nearest-rank p-th percentile (0 < p <= 100) of
// sorted: the smallest sample with at least p% of samples at or below it.
// Nearest rank never invents a latency that was not observed.
func percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	rank := int(math.Ceil(p / 100 * float64(len(sorted))))
	return sorted[min(max(rank, 1), len(sorted))-1]
}

// rate is events per second over elapsed; 0 when nothing was timed.
func rate(n int, elapsed time.Duration) float64 {
	if elapsed <= 0 {
		return 0
	}
	return float64(n) / elapsed.Seconds()
}

// ms converts a duration to fractional milliseconds, the unit figures use.
func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// summary is what a timed scenario reports about its measured window.
type summary struct {
	throughput float64 // successful requests per second
	p50, p99   time.Duration
}

// summarize sorts lat in place and computes the figures from all samples.
func summarize(lat []time.Duration, elapsed time.Duration) summary {
	slices.Sort(lat)
	return summary{
		throughput: rate(len(lat), elapsed),
		p50:        percentile(lat, 50),
		p99:        percentile(lat, 99),
	}
}
