package dicom

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"gocloud.dev/blob"
	_ "gocloud.dev/blob/fileblob" // file:// URLs
	_ "gocloud.dev/blob/s3blob"   // s3:// URLs (and S3-compatible stores via endpoint=…)
	"gocloud.dev/gcerrors"
)

// Blobs stores instance files. Reads, deletes and non-file writes go through
// gocloud.dev/blob; file:// writes are done here because fileblob renames
// its temp file without fsync, and a C-STORE success promises durability.
type Blobs struct {
	bucket *blob.Bucket
	dir    string // root directory for file:// URLs, else ""

	// dirs caches the fan-out directories known to exist durably, so a
	// write does not stat (or fsync) its way up the tree each time.
	dirs sync.Map // path → struct{}
}

// OpenBlobs opens a blob store URL: file:///abs/dir (created if missing) or
// any URL gocloud.dev/blob opens (s3://bucket?region=…&endpoint=…).
func OpenBlobs(ctx context.Context, rawURL string) (*Blobs, error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		return nil, fmt.Errorf("dicom: blob url: %w", err)
	}
	b := &Blobs{}
	if u.Scheme == "file" {
		b.dir = filepath.FromSlash(u.Path)
		if err := os.MkdirAll(b.dir, 0o755); err != nil {
			return nil, fmt.Errorf("dicom: blob dir: %w", err)
		}
		// Files are written without sidecar metadata; fileblob reads them as is.
		q := u.Query()
		q.Set("metadata", "skip")
		u.RawQuery = q.Encode()
		rawURL = u.String()
	}
	b.bucket, err = blob.OpenBucket(ctx, rawURL)
	if err != nil {
		return nil, fmt.Errorf("dicom: open blob store: %w", err)
	}
	return b, nil
}

// Close releases the bucket.
func (b *Blobs) Close() error { return b.bucket.Close() }

// blobWriter is an upload that becomes visible only on Commit.
type blobWriter interface {
	io.Writer
	Commit() error // durable once it returns nil
	Abort()
}

func (b *Blobs) create(ctx context.Context, key string) (blobWriter, error) {
	if b.dir != "" {
		path := filepath.Join(b.dir, filepath.FromSlash(key))
		dir := filepath.Dir(path)
		if err := b.mkdir(dir); err != nil {
			return nil, err
		}
		// Keys are unique per write (see blobKey), so the file is created
		// at its final path: no temporary name, no rename, and so no second
		// directory update to make durable. Until its metadata commits
		// nothing refers to it, and Abort removes it.
		f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
		if err != nil {
			return nil, fmt.Errorf("dicom: blob create: %w", err)
		}
		return &fileWriter{f: f, dir: dir}, nil
	}
	cctx, cancel := context.WithCancel(ctx)
	w, err := b.bucket.NewWriter(cctx, key, &blob.WriterOptions{ContentType: "application/dicom"})
	if err != nil {
		cancel()
		return nil, fmt.Errorf("dicom: blob create: %w", err)
	}
	return &bucketWriter{w: w, cancel: cancel}, nil
}

// mkdir makes dir (below b.dir) exist durably: each directory it creates
// is synced into its parent.
func (b *Blobs) mkdir(dir string) error {
	if _, ok := b.dirs.Load(dir); ok || dir == b.dir {
		return nil
	}
	if err := b.mkdir(filepath.Dir(dir)); err != nil {
		return err
	}
	err := os.Mkdir(dir, 0o755)
	if err != nil && !errors.Is(err, fs.ErrExist) {
		return fmt.Errorf("dicom: blob dir: %w", err)
	}
	// Sync the parent even when the directory existed: it may have been
	// created just before a crash, or by a concurrent write.
	if err := syncDir(filepath.Dir(dir)); err != nil {
		return err
	}
	b.dirs.Store(dir, struct{}{})
	return nil
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("dicom: blob dir sync: %w", err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("dicom: blob dir sync: %w", err)
	}
	return nil
}

type fileWriter struct {
	f   *os.File
	dir string
}

func (w *fileWriter) Write(p []byte) (int, error) { return w.f.Write(p) }

// Commit makes the file durable: its data and its directory entry. The
// two syncs run at once, so the file system can commit both in one
// journal flush rather than one after the other.
func (w *fileWriter) Commit() error {
	dirErr := make(chan error, 1)
	go func() { dirErr <- syncDir(w.dir) }()
	err := w.f.Sync()
	if err != nil {
		err = fmt.Errorf("dicom: blob sync: %w", err)
	}
	if derr := <-dirErr; err == nil {
		err = derr
	}
	if cerr := w.f.Close(); err == nil && cerr != nil {
		err = fmt.Errorf("dicom: blob close: %w", cerr)
	}
	if err != nil {
		_ = os.Remove(w.f.Name())
	}
	return err
}

func (w *fileWriter) Abort() {
	w.f.Close()
	_ = os.Remove(w.f.Name())
}

type bucketWriter struct {
	w      *blob.Writer
	cancel context.CancelFunc
}

func (w *bucketWriter) Write(p []byte) (int, error) { return w.w.Write(p) }

func (w *bucketWriter) Commit() error {
	defer w.cancel()
	if err := w.w.Close(); err != nil {
		return fmt.Errorf("dicom: blob upload: %w", err)
	}
	return nil
}

// Abort cancels the upload: gocloud discards a writer whose context ends
// before Close.
func (w *bucketWriter) Abort() {
	w.cancel()
	_ = w.w.Close()
}

// Open streams a stored blob's bytes from offset (length < 0: to the end).
func (b *Blobs) Open(ctx context.Context, key string, offset, length int64) (io.ReadCloser, error) {
	r, err := b.bucket.NewRangeReader(ctx, key, offset, length, nil)
	if err != nil {
		if gcerrors.Code(err) == gcerrors.NotFound {
			return nil, fmt.Errorf("dicom: blob %s: %w", key, os.ErrNotExist)
		}
		return nil, fmt.Errorf("dicom: blob %s: %w", key, err)
	}
	return r, nil
}

func (b *Blobs) delete(ctx context.Context, key string) error {
	err := b.bucket.Delete(ctx, key)
	if err != nil && gcerrors.Code(err) != gcerrors.NotFound {
		return fmt.Errorf("dicom: blob delete %s: %w", key, err)
	}
	return nil
}

// list calls fn with every stored key (in-progress temporary names left
// out) and its modification time.
func (b *Blobs) list(ctx context.Context, fn func(key string, mod time.Time) error) error {
	it := b.bucket.List(nil)
	for {
		obj, err := it.Next(ctx)
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("dicom: blob list: %w", err)
		}
		if strings.Contains(obj.Key, ".tmp-") {
			continue
		}
		if err := fn(obj.Key, obj.ModTime); err != nil {
			return err
		}
	}
}

// Keys lists every stored key (tests and maintenance; not for hot paths).
func (b *Blobs) Keys(ctx context.Context) ([]string, error) {
	var keys []string
	err := b.list(ctx, func(key string, _ time.Time) error {
		keys = append(keys, key)
		return nil
	})
	return keys, err
}
