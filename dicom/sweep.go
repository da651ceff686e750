package dicom

import (
	"context"
	"fmt"
	"time"
)

// Blobs can outlive their instance rows: an ingest that stops between
// writing the blob and committing its metadata (a crash, a lost database),
// or a replaced instance whose old blob could not be deleted after the
// commit. SweepOrphans removes them.

// orphanMinAge is how old an unreferenced blob must be before the sweep
// deletes it: younger ones may belong to an ingest still in flight, which
// writes its blob before it commits the row that names it.
const orphanMinAge = time.Hour

// sweepBatch is how many keys one database lookup checks.
const sweepBatch = 1000

// SweepOrphans deletes blobs that no instance names and that were last
// modified before now minus minAge, and returns how many it deleted.
// Replicas sweeping the same store at once are harmless.
func (s *Service) SweepOrphans(ctx context.Context, now time.Time, minAge time.Duration) (int, error) {
	cutoff := now.Add(-minAge)
	var batch []string
	deleted := 0
	flush := func() error {
		if len(batch) == 0 {
			return nil
		}
		orphans, err := s.db.UnreferencedBlobs(ctx, batch)
		if err != nil {
			return fmt.Errorf("dicom: sweep: %w", err)
		}
		for _, k := range orphans {
			if err := s.cfg.Blobs.delete(ctx, k); err != nil {
				return err
			}
			deleted++
		}
		batch = batch[:0]
		return nil
	}
	err := s.cfg.Blobs.list(ctx, func(key string, mod time.Time) error {
		if !mod.Before(cutoff) {
			return nil
		}
		batch = append(batch, key)
		if len(batch) >= sweepBatch {
			return flush()
		}
		return nil
	})
	if err == nil {
		err = flush()
	}
	return deleted, err
}

// SweepOrphansEvery runs SweepOrphans at once and then every interval
// until ctx ends, logging what it removes.
func (s *Service) SweepOrphansEvery(ctx context.Context, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		n, err := s.SweepOrphans(ctx, time.Now(), orphanMinAge)
		switch {
		case err != nil && ctx.Err() == nil:
			s.log.Warn("DICOM: sweeping orphaned blobs", "err", err)
		case n > 0:
			s.log.Info("DICOM: removed orphaned blobs", "count", n)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
