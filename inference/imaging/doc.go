// Package imaging turns one stored DICOM instance into the float32 NCHW
// tensor a model's manifest asks for: it reads the Part-10 header, decodes
// one frame (native, RLE, JPEG baseline/extended/lossless) and runs the
// manifest's `preprocess` block (rescale, VOI window, MONOCHROME1
// inversion, channel conversion, resize, mean/std).
//
// Depends only on the standard library (image/jpeg for 8-bit DCT JPEG) and
// its sub-package jpegdec (12-bit DCT and lossless JPEG, which image/jpeg
// lacks). It does not import dicom/: that package is ingest, this one reads
// the bytes ingest stored (the Part-10 file, through an io.ReaderAt), so the
// two can change independently.
//
// Memory: Tensor reads the header through a small buffer, then only the
// bytes of the frame it uses (one ReadAt for native data, the frame's
// fragments for encapsulated data), so a 2,000-frame instance costs one
// frame. imagingtest.Reference is the same pipeline written as plain
// float64 loops; tests hold the fast path to it, and later end-to-end tests
// compute expected model outputs with it.
package imaging
