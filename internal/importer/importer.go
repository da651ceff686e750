// Package importer loads FHIR resources from files through Ember's one write
// path: ndjson (one resource per line, as Bulk Data $export writes it) and
// Bundles. Every resource is validated by fhir.Parser and written under
// its own id, as an update when it is stored already (so importing twice
// does not duplicate), or created when it has none. Everything goes through
// the engine as engine.System: transaction and batch Bundles are executed as
// the REST API would (Engine.Transaction); other Bundles contribute their
// entries' resources.
//
// Validation runs on every core while writers commit batches and Bundles,
// a few transactions at once; those whose footprints conflict (order.go)
// are written in file order, so the outcome is that of sequential writes
// (the last copy of a resource that appears twice is the one kept).
// Batches are written with engine.Tx.PutMany (COPY for new resources, one
// statement per table for stored ones) and commit without waiting for the
// WAL flush; the import waits for durability once, at the end.
package importer

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/emberfhir/ember/engine"
	"github.com/emberfhir/ember/fhir"
)

// Options tune Import.
type Options struct {
	// BatchSize is how many resources one database transaction writes;
	// 0 means 200.
	BatchSize int
	// Workers is how many goroutines validate; 0 means GOMAXPROCS.
	Workers int
	// Writers is how many batches or Bundles are written at once, each in
	// its own transaction; 0 means 3. Those that share a resource id, or
	// where one searches a type the other writes, are written one after
	// the other in file order, so the outcome is that of writing
	// everything in file order.
	Writers int
	// MaxErrors bounds the errors kept in Result.Errors (all are counted);
	// 0 means 20.
	MaxErrors int
	// Progress, when set, is called about every ProgressEvery (default
	// 250 ms) from a separate goroutine with the counts so far.
	Progress      func(Stats)
	ProgressEvery time.Duration
	// Lenient drops elements R4 does not define instead of refusing the
	// resource, each drop reported in Result.Dropped (ember import
	// --lenient, for migrations from lenient servers).
	Lenient bool
}

// Stats are an import's running counts.
type Stats struct {
	Files     int64 // files read to the end
	Resources int64 // resources written (including transaction/batch entries that succeeded)
	Failed    int64 // resources or entries not written
	Elapsed   time.Duration
}

// Rate is resources written per second.
func (s Stats) Rate() float64 {
	if s.Elapsed <= 0 {
		return 0
	}
	return float64(s.Resources) / s.Elapsed.Seconds()
}

// ItemError is one resource or entry that was not written.
type ItemError struct {
	File  string
	Line  int // 1-based ndjson line; 0 for a JSON file
	Entry int // 0-based Bundle entry; -1 when not in a Bundle (or the whole Bundle failed)
	Err   error
}

func (e ItemError) Error() string {
	loc := e.File
	switch {
	case e.Line > 0:
		loc += fmt.Sprintf(":%d", e.Line)
	case e.Entry >= 0:
		loc += fmt.Sprintf(": entry %d", e.Entry)
	}
	return loc + ": " + e.Err.Error()
}

func (e ItemError) Unwrap() error { return e.Err }

// Result is a finished import.
type Result struct {
	Stats
	Errors []ItemError // the first Options.MaxErrors, in file order
	// Dropped are the elements lenient handling dropped, one per element
	// (Err names its expression), the first Options.MaxErrors in file
	// order; DroppedCount counts them all.
	Dropped      []ItemError
	DroppedCount int64
}

// errorAt is an ItemError with its position in the input, for ordering.
type errorAt struct {
	seq int // the chunk's place in the input
	ItemError
}

func (a errorAt) before(b errorAt) bool {
	if a.seq != b.seq {
		return a.seq < b.seq
	}
	if a.Line != b.Line {
		return a.Line < b.Line
	}
	return a.Entry < b.Entry
}

// Import reads paths (files, or directories searched recursively for
// *.ndjson, *.jsonl, *.json and their .gz forms) and writes their resources
// through eng. Per-resource problems are collected in Result; the error is
// for what stops the import (unreadable file, database gone, ctx done).
func Import(ctx context.Context, eng *engine.Engine, paths []string, opts Options) (Result, error) {
	if opts.BatchSize <= 0 {
		opts.BatchSize = 200
	}
	if opts.Workers <= 0 {
		opts.Workers = runtime.GOMAXPROCS(0)
	}
	if opts.Writers <= 0 {
		opts.Writers = 3
	}
	if opts.MaxErrors <= 0 {
		opts.MaxErrors = 20
	}
	if opts.ProgressEvery <= 0 {
		opts.ProgressEvery = 250 * time.Millisecond
	}
	files, err := expand(paths)
	if err != nil {
		return Result{}, err
	}
	im := &importer{eng: eng, p: eng.Parser(), opts: opts, start: time.Now()}
	return im.run(ctx, files)
}

// expand lists the files to read, in a stable order.
func expand(paths []string) ([]string, error) {
	var out []string
	for _, p := range paths {
		fi, err := os.Stat(p)
		if err != nil {
			return nil, fmt.Errorf("import: %w", err)
		}
		if !fi.IsDir() {
			out = append(out, p)
			continue
		}
		var found []string
		err = filepath.WalkDir(p, func(path string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			if !d.IsDir() && importable(path) {
				found = append(found, path)
			}
			return nil
		})
		if err != nil {
			return nil, fmt.Errorf("import: %w", err)
		}
		sort.Strings(found)
		out = append(out, found...)
	}
	return out, nil
}

func importable(path string) bool {
	name := strings.TrimSuffix(strings.ToLower(path), ".gz")
	return strings.HasSuffix(name, ".ndjson") || strings.HasSuffix(name, ".jsonl") || strings.HasSuffix(name, ".json")
}

// isNDJSON tells a line-per-resource file from a single JSON document by
// its name; a file named on the command line with another suffix is read
// as ndjson, the format bulk tools exchange.
func isNDJSON(path string) bool {
	return !strings.HasSuffix(strings.TrimSuffix(strings.ToLower(path), ".gz"), ".json")
}

type importer struct {
	eng   *engine.Engine
	p     *fhir.Parser
	opts  Options
	start time.Time

	files, resources, errCount atomic.Int64
	sent                       int // chunks sent so far; the reader's alone

	mu     sync.Mutex
	errors []errorAt // the first MaxErrors in input order

	droppedCount atomic.Int64
	dropped      []errorAt // lenient drops, kept as errors are
}

// item is one resource to validate and write.
type item struct {
	line, entry int
	raw         []byte
	res         *fhir.Resource
	err         error
	dropped     []fhir.Issue // lenient handling's warnings
}

// chunk is a batch of one file's items, validated together and written in
// one transaction; or a transaction/batch Bundle (bundle != nil), which
// the engine validates and writes itself.
type chunk struct {
	seq    int
	file   string
	items  []item
	bundle []byte
	// footprint of a Bundle, from its entries; an item chunk's is taken
	// once its items are validated.
	footprint *footprint
	last      bool          // the file's last chunk
	done      chan struct{} // closed when validated
}

// fail records an item that was not written. Writers run concurrently, so
// errors arrive roughly in order; the kept ones are the first MaxErrors
// in input order all the same.
func (im *importer) fail(c *chunk, e ItemError) {
	im.errCount.Add(1)
	im.mu.Lock()
	defer im.mu.Unlock()
	im.errors = im.keep(im.errors, errorAt{seq: c.seq, ItemError: e})
}

// keep inserts ea into list in input order, keeping the first MaxErrors.
func (im *importer) keep(list []errorAt, ea errorAt) []errorAt {
	i := sort.Search(len(list), func(i int) bool { return ea.before(list[i]) })
	if i >= im.opts.MaxErrors {
		return list
	}
	list = append(list, errorAt{})
	copy(list[i+1:], list[i:])
	list[i] = ea
	if len(list) > im.opts.MaxErrors {
		list = list[:im.opts.MaxErrors]
	}
	return list
}

// drop records the elements lenient handling dropped from one resource
// that was written.
func (im *importer) drop(c *chunk, line, entry int, issues []fhir.Issue) {
	if len(issues) == 0 {
		return
	}
	im.droppedCount.Add(int64(len(issues)))
	im.mu.Lock()
	defer im.mu.Unlock()
	for _, is := range issues {
		err := errors.New(is.Diagnostics + " at " + strings.Join(is.Expression, ", "))
		im.dropped = im.keep(im.dropped, errorAt{seq: c.seq, ItemError: ItemError{File: c.file, Line: line, Entry: entry, Err: err}})
	}
}

func (im *importer) stats() Stats {
	return Stats{Files: im.files.Load(), Resources: im.resources.Load(), Failed: im.errCount.Load(), Elapsed: time.Since(im.start)}
}

func (im *importer) run(ctx context.Context, files []string) (Result, error) {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	// order carries chunks to the writer in file order; work carries the
	// same chunks to the validators. Its capacity bounds the chunks in
	// memory.
	order := make(chan *chunk, 2*im.opts.Workers)
	work := make(chan *chunk, 2*im.opts.Workers)
	var wg sync.WaitGroup
	for range im.opts.Workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for c := range work {
				for i := range c.items {
					it := &c.items[i]
					if it.err == nil {
						if im.opts.Lenient {
							it.res, it.dropped, it.err = im.p.ParseLenient(it.raw, "")
						} else {
							it.res, it.err = im.p.Parse(it.raw, "")
						}
					}
				}
				close(c.done)
			}
		}()
	}
	readErr := make(chan error, 1)
	go func() {
		defer close(order)
		defer close(work)
		readErr <- im.read(ctx, files, order, work)
	}()
	stopProgress := im.progress()
	writeErr := im.write(ctx, order)
	if writeErr != nil {
		cancel(writeErr)
		for range order { // let the reader finish
		}
	}
	wg.Wait()
	stopProgress()
	err := <-readErr
	if writeErr != nil {
		err = writeErr
	}
	if err == nil {
		err = ctx.Err()
	}
	im.mu.Lock()
	defer im.mu.Unlock()
	res := Result{Stats: im.stats()}
	for _, e := range im.errors {
		res.Errors = append(res.Errors, e.ItemError)
	}
	for _, e := range im.dropped {
		res.Dropped = append(res.Dropped, e.ItemError)
	}
	res.DroppedCount = im.droppedCount.Load()
	return res, err
}

// progress calls Options.Progress periodically until the returned stop.
func (im *importer) progress() (stop func()) {
	if im.opts.Progress == nil {
		return func() {}
	}
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		t := time.NewTicker(im.opts.ProgressEvery)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
				im.opts.Progress(im.stats())
			}
		}
	}()
	return func() { close(done); wg.Wait() }
}

// send queues c for validation (unless it is a Bundle to execute) and
// writing.
func (im *importer) send(ctx context.Context, c *chunk, order, work chan<- *chunk) error {
	c.done = make(chan struct{})
	c.seq = im.sent
	im.sent++
	select {
	case order <- c:
	case <-ctx.Done():
		return context.Cause(ctx)
	}
	if c.bundle != nil {
		close(c.done)
		return nil
	}
	select {
	case work <- c:
	case <-ctx.Done():
		close(c.done)
		return context.Cause(ctx)
	}
	return nil
}

func (im *importer) read(ctx context.Context, files []string, order, work chan<- *chunk) error {
	for _, f := range files {
		var err error
		if isNDJSON(f) {
			err = im.readNDJSON(ctx, f, order, work)
		} else {
			err = im.readJSON(ctx, f, order, work)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// open opens a file, decompressing .gz.
func open(path string) (io.ReadCloser, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("import: %w", err)
	}
	if !strings.HasSuffix(strings.ToLower(path), ".gz") {
		return f, nil
	}
	z, err := gzip.NewReader(f)
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("import: %s: %w", path, err)
	}
	return struct {
		io.Reader
		io.Closer
	}{z, f}, nil
}

func (im *importer) readNDJSON(ctx context.Context, path string, order, work chan<- *chunk) error {
	f, err := open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	br := bufio.NewReaderSize(f, 1<<20)
	c := &chunk{file: path}
	for line := 1; ; line++ {
		raw, err := br.ReadBytes('\n')
		if err != nil && !errors.Is(err, io.EOF) {
			return fmt.Errorf("import: %s:%d: %w", path, line, err)
		}
		eof := err != nil
		if line == 1 {
			raw = bytes.TrimPrefix(raw, []byte("\xef\xbb\xbf")) // a UTF-8 BOM
		}
		if raw = bytes.TrimSpace(raw); len(raw) > 0 {
			c.items = append(c.items, item{line: line, entry: -1, raw: raw})
		}
		if eof || len(c.items) >= im.opts.BatchSize {
			c.last = eof
			if err := im.send(ctx, c, order, work); err != nil {
				return err
			}
			if eof {
				return nil
			}
			c = &chunk{file: path}
		}
	}
}

// maxJSONFile bounds a single JSON document (a Bundle is read whole).
const maxJSONFile = 1 << 30

func (im *importer) readJSON(ctx context.Context, path string, order, work chan<- *chunk) error {
	f, err := open(path)
	if err != nil {
		return err
	}
	body, err := io.ReadAll(io.LimitReader(f, maxJSONFile+1))
	f.Close()
	if err != nil {
		return fmt.Errorf("import: %s: %w", path, err)
	}
	if len(body) > maxJSONFile {
		return fmt.Errorf("import: %s: larger than %d bytes; split it into ndjson", path, maxJSONFile)
	}
	var head struct {
		ResourceType string        `json:"resourceType"`
		Type         string        `json:"type"`
		Entry        []bundleEntry `json:"entry"`
	}
	if err := json.Unmarshal(body, &head); err != nil || head.ResourceType != "Bundle" {
		// Not a Bundle (or not JSON): one resource, which validation judges.
		return im.send(ctx, &chunk{file: path, last: true, items: []item{{entry: -1, raw: body}}}, order, work)
	}
	if head.Type == "transaction" || head.Type == "batch" {
		return im.send(ctx, &chunk{file: path, last: true, bundle: body, footprint: bundleFootprint(head.Entry)}, order, work)
	}
	c := &chunk{file: path}
	for i, e := range head.Entry {
		it := item{entry: i, raw: e.Resource}
		if len(e.Resource) == 0 {
			it.err = errors.New("entry without a resource")
		}
		c.items = append(c.items, it)
		if len(c.items) >= im.opts.BatchSize {
			if err := im.send(ctx, c, order, work); err != nil {
				return err
			}
			c = &chunk{file: path}
		}
	}
	c.last = true
	return im.send(ctx, c, order, work)
}

// write commits chunks with up to Options.Writers transactions at once. A
// chunk waits for the chunks before it whose writes could change its
// outcome or be changed by it (see footprint), so every resource ends as
// sequential writing in file order would leave it.
func (im *importer) write(ctx context.Context, order <-chan *chunk) error {
	fl := newInflight()
	for c := range order {
		select {
		case <-c.done:
		case <-ctx.Done():
			return errors.Join(context.Cause(ctx), fl.wait())
		}
		fp := c.footprint
		if fp == nil {
			fp = itemsFootprint(c.items)
		}
		if err := fl.admit(fp, im.opts.Writers); err != nil {
			break
		}
		go func() { fl.finish(fp, im.writeChunk(ctx, c)) }()
	}
	if err := fl.wait(); err != nil {
		return err
	}
	// Batches commit without waiting for their WAL flush (InBulkTx); the
	// import is only reported done once all of it is durable.
	return im.eng.WaitDurable(ctx)
}

func (im *importer) writeChunk(ctx context.Context, c *chunk) error {
	var err error
	if c.bundle != nil {
		err = im.writeBundle(ctx, c)
	} else {
		err = im.writeItems(ctx, c)
	}
	if err == nil && c.last {
		im.files.Add(1)
	}
	return err
}

// writeItems writes a chunk's valid resources in one transaction. If the
// transaction fails, each resource is retried on its own so one bad write
// costs only itself.
func (im *importer) writeItems(ctx context.Context, c *chunk) error {
	var valid []*item
	for i := range c.items {
		it := &c.items[i]
		if it.err != nil {
			im.fail(c, ItemError{File: c.file, Line: it.line, Entry: it.entry, Err: it.err})
			continue
		}
		valid = append(valid, it)
	}
	if len(valid) == 0 {
		return nil
	}
	resources := make([]*fhir.Resource, len(valid))
	for i, it := range valid {
		resources[i] = it.res
	}
	err := im.eng.InBulkTx(ctx, engine.System, func(tx *engine.Tx) error { return tx.PutMany(resources) })
	if err == nil {
		im.resources.Add(int64(len(valid)))
		for _, it := range valid {
			im.drop(c, it.line, it.entry, it.dropped)
		}
		return nil
	}
	if ctx.Err() != nil {
		return context.Cause(ctx)
	}
	for _, it := range valid {
		err := im.eng.InBulkTx(ctx, engine.System, func(tx *engine.Tx) error { return tx.Put(it.res) })
		switch {
		case err == nil:
			im.resources.Add(1)
			im.drop(c, it.line, it.entry, it.dropped)
		case ctx.Err() != nil:
			return context.Cause(ctx)
		default:
			im.fail(c, ItemError{File: c.file, Line: it.line, Entry: it.entry, Err: err})
		}
	}
	return nil
}

// writeBundle executes a transaction or batch Bundle.
func (im *importer) writeBundle(ctx context.Context, c *chunk) error {
	resp, err := im.eng.TransactionWith(ctx, engine.System, c.bundle, engine.TransactionOptions{Lenient: im.opts.Lenient})
	if err != nil {
		if ctx.Err() != nil {
			return context.Cause(ctx)
		}
		im.fail(c, ItemError{File: c.file, Entry: -1, Err: err})
		return nil
	}
	for i, e := range resp.Entries {
		if e.Err == nil {
			im.resources.Add(1)
			im.drop(c, 0, i, e.Warnings)
			continue
		}
		im.fail(c, ItemError{File: c.file, Entry: i, Err: e.Err})
	}
	return nil
}
