package dicomdb

import (
	"context"
	"errors"
	"slices"
	"testing"

	"github.com/emberfhir/ember/internal/pgtest"
	"github.com/emberfhir/ember/store"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

func newDB(t *testing.T) (*DB, *store.Store) {
	t.Helper()
	st, err := store.Open(t.Context(), pgtest.NewDatabase(t), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(st.Close)
	return New(st), st
}

func intp(v int) *int { return &v }

// record is an instance with a few study values, without pixel data.
func record(study, series, sop string, number int) *Record {
	return &Record{
		Study:  Study{UID: study, PatientID: "P1", PatientName: "Doe^Jane", Date: "20240102", Accession: "A1"},
		Series: Series{UID: series, Modality: "CT", Number: intp(1)},
		Instance: Instance{SOPUID: sop, SOPClass: "1.2.840.10008.5.1.4.1.1.2", TransferSyntax: "1.2.840.10008.1.2.1",
			Number: intp(number), BlobKey: "blob/" + sop, Size: 100, PixelOffset: -1, PixelLength: -1},
	}
}

func save(t *testing.T, db *DB, r *Record, p Replace) Saved {
	t.Helper()
	s, err := db.SaveInstance(t.Context(), r, p)
	if err != nil {
		t.Fatalf("save %s: %v", r.Instance.SOPUID, err)
	}
	return s
}

func (db *DB) row(t *testing.T, sop string) (blob, source string) {
	t.Helper()
	if err := db.pool.QueryRow(t.Context(), `SELECT blob_key, source_ae FROM dicom_instances WHERE sop_uid = $1`, sop).
		Scan(&blob, &source); err != nil {
		t.Fatal(err)
	}
	return blob, source
}

func (db *DB) patientName(t *testing.T, study string) string {
	t.Helper()
	var name string
	if err := db.pool.QueryRow(t.Context(), `SELECT patient_name FROM dicom_studies WHERE study_uid = $1`, study).Scan(&name); err != nil {
		t.Fatal(err)
	}
	return name
}

// The overwrite policy, decided on the conflicting row: the same data set
// always replaces and keeps its first source; other data as the policy
// says; a refusal changes nothing, study values included.
func TestSaveInstanceReplace(t *testing.T) {
	db, _ := newDB(t)
	digest := func(b byte) []byte { return []byte{b, b, b} }
	first := record("1.2.3.1", "1.2.3.1.1", "1.2.3.1.1.1", 1)
	first.Instance.SourceAE, first.Instance.Digest = "MODALITY", digest(1)
	if s := save(t, db, first, ReplaceSameSource); s != (Saved{}) {
		t.Fatalf("new instance: %+v, want nothing replaced", s)
	}

	again := *first
	again.Instance.SourceAE, again.Instance.BlobKey = "OTHER", "blob/again"
	if s := save(t, db, &again, ReplaceSameSource); s.ReplacedBlobKey != first.Instance.BlobKey {
		t.Errorf("same data from another source: replaced %q, want %q", s.ReplacedBlobKey, first.Instance.BlobKey)
	}
	if blob, src := db.row(t, first.Instance.SOPUID); blob != "blob/again" || src != "MODALITY" {
		t.Errorf("after same data from another source: blob %q source %q, want blob/again MODALITY", blob, src)
	}

	other := *first
	other.Study.PatientName = "Mallory^Eve"
	other.Instance.SourceAE, other.Instance.Digest, other.Instance.BlobKey = "OTHER", digest(2), "blob/other"
	for _, p := range []Replace{ReplaceSameSource, ReplaceNever} {
		_, err := db.SaveInstance(t.Context(), &other, p)
		if !errors.Is(err, ErrOverwriteRefused) {
			t.Errorf("policy %d, other data from another source: %v, want ErrOverwriteRefused", p, err)
		}
	}
	if got := db.patientName(t, first.Study.UID); got != "Doe^Jane" {
		t.Errorf("a refused save changed the study's patient name to %q", got)
	}
	if blob, _ := db.row(t, first.Instance.SOPUID); blob != "blob/again" {
		t.Errorf("a refused save changed the blob to %q", blob)
	}

	// Never refuses other data even from the source that stored it;
	// same-ae lets that source replace.
	mine := other
	mine.Instance.SourceAE = "MODALITY"
	if _, err := db.SaveInstance(t.Context(), &mine, ReplaceNever); !errors.Is(err, ErrOverwriteRefused) {
		t.Errorf("never, other data from the same source: %v, want ErrOverwriteRefused", err)
	}
	if s := save(t, db, &mine, ReplaceSameSource); s.ReplacedBlobKey != "blob/again" {
		t.Errorf("same-ae, other data from the same source: replaced %q, want blob/again", s.ReplacedBlobKey)
	}
	if got := db.patientName(t, first.Study.UID); got != "Mallory^Eve" {
		t.Errorf("patient name %q after an accepted replace, want Mallory^Eve", got)
	}

	// Always: anything replaces, digests or not (DICOMweb stores none).
	stow := mine
	stow.Instance.SourceAE, stow.Instance.Digest, stow.Instance.BlobKey = "", nil, "blob/stow"
	if s := save(t, db, &stow, ReplaceAlways); s.ReplacedBlobKey != "blob/other" {
		t.Errorf("always: replaced %q, want blob/other", s.ReplacedBlobKey)
	}
	if blob, src := db.row(t, first.Instance.SOPUID); blob != "blob/stow" || src != "" {
		t.Errorf("after always: blob %q source %q, want blob/stow and no source", blob, src)
	}
}

// Study and series values: the latest non-empty value wins.
func TestSaveInstanceLatestNonEmpty(t *testing.T) {
	db, _ := newDB(t)
	save(t, db, record("1.2.3.1", "1.2.3.1.1", "1.2.3.1.1.1", 1), ReplaceAlways)
	r := record("1.2.3.1", "1.2.3.1.1", "1.2.3.1.1.2", 2)
	r.Study.PatientName, r.Study.Accession = "", "A2"
	save(t, db, r, ReplaceAlways)
	if got := db.patientName(t, "1.2.3.1"); got != "Doe^Jane" {
		t.Errorf("an empty PatientName replaced the stored one: %q", got)
	}
	var acc string
	if err := db.pool.QueryRow(t.Context(), `SELECT accession FROM dicom_studies WHERE study_uid = '1.2.3.1'`).Scan(&acc); err != nil {
		t.Fatal(err)
	}
	if acc != "A2" {
		t.Errorf("accession %q, want the latest A2", acc)
	}
}

// The sync cycle: a new instance makes its study stale; LockStudy reads
// the study in order; MarkSynced clears it; an instance that moves to
// another study makes its old study stale too.
func TestSyncCycle(t *testing.T) {
	db, st := newDB(t)
	ctx := t.Context()
	r := record("1.2.3.1", "1.2.3.1.2", "1.2.3.1.2.1", 2)
	r.Series.Number = intp(2)
	save(t, db, r, ReplaceAlways)
	save(t, db, record("1.2.3.1", "1.2.3.1.1", "1.2.3.1.1.2", 2), ReplaceAlways)
	save(t, db, record("1.2.3.1", "1.2.3.1.1", "1.2.3.1.1.1", 1), ReplaceAlways)
	stale, err := db.StaleStudies(ctx)
	if err != nil || !slices.Equal(stale, []string{"1.2.3.1"}) {
		t.Fatalf("stale studies %v %v, want [1.2.3.1]", stale, err)
	}
	sync := func(uid string) *LockedStudy {
		t.Helper()
		var got *LockedStudy
		if err := st.InTx(ctx, func(tx *store.Tx) error {
			ls, err := db.LockStudy(ctx, tx, uid)
			if err != nil {
				return err
			}
			got = ls
			return db.MarkSynced(ctx, tx, uid, ls.MaxSeq)
		}); err != nil {
			t.Fatal(err)
		}
		return got
	}
	ls := sync("1.2.3.1")
	if !ls.Stale() || ls.PatientName != "Doe^Jane" || ls.Accession != "A1" {
		t.Errorf("locked study %+v, want stale with its values", ls)
	}
	var order []string
	for _, se := range ls.Series {
		for _, in := range se.Instances {
			order = append(order, se.UID+" "+in.SOPUID)
		}
	}
	want := []string{"1.2.3.1.1 1.2.3.1.1.1", "1.2.3.1.1 1.2.3.1.1.2", "1.2.3.1.2 1.2.3.1.2.1"}
	if !slices.Equal(order, want) {
		t.Errorf("series/instances %v, want %v", order, want)
	}
	if stale, err := db.StaleStudies(ctx); err != nil || len(stale) != 0 {
		t.Errorf("after MarkSynced: stale %v %v, want none", stale, err)
	}
	if ls := sync("1.2.3.1"); ls.Stale() {
		t.Errorf("synced study reads stale: %+v", ls)
	}

	// The instance moves to study 1.2.3.9: both are stale now.
	moved := record("1.2.3.9", "1.2.3.9.1", "1.2.3.1.1.2", 1)
	if s := save(t, db, moved, ReplaceAlways); s.MovedFromStudyUID != "1.2.3.1" {
		t.Errorf("moved from %q, want 1.2.3.1", s.MovedFromStudyUID)
	}
	stale, err = db.StaleStudies(ctx)
	slices.Sort(stale)
	if err != nil || !slices.Equal(stale, []string{"1.2.3.1", "1.2.3.9"}) {
		t.Errorf("stale after a move %v %v, want both studies", stale, err)
	}
	if ls := sync("1.2.3.1"); !ls.ForceSync || len(ls.Series) != 2 || len(ls.Series[0].Instances) != 1 {
		t.Errorf("old study after the move: %+v", ls)
	}

	err = st.InTx(ctx, func(tx *store.Tx) error {
		_, err := db.LockStudy(ctx, tx, "1.2.3.404")
		return err
	})
	if !errors.Is(err, ErrNotFound) {
		t.Errorf("unknown study: %v, want ErrNotFound", err)
	}
}

func TestInstancesAndSweep(t *testing.T) {
	db, _ := newDB(t)
	ctx := t.Context()
	r := record("1.2.3.1", "1.2.3.1.1", "1.2.3.1.1.1", 2)
	r.Instance.PixelOffset, r.Instance.PixelLength, r.Instance.Rows = 400, 512, intp(16)
	save(t, db, r, ReplaceAlways)
	save(t, db, record("1.2.3.1", "1.2.3.1.1", "1.2.3.1.1.2", 1), ReplaceAlways)
	save(t, db, record("1.2.3.1", "1.2.3.1.2", "1.2.3.1.2.1", 1), ReplaceAlways)

	all, err := db.Instances(ctx, "1.2.3.1", "", "")
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, s := range all {
		got = append(got, s.SOPUID)
	}
	if want := []string{"1.2.3.1.1.2", "1.2.3.1.1.1", "1.2.3.1.2.1"}; !slices.Equal(got, want) {
		t.Errorf("instances %v, want %v", got, want)
	}
	if one, err := db.Instances(ctx, "1.2.3.1", "1.2.3.1.2", ""); err != nil || len(one) != 1 {
		t.Errorf("one series: %v %v", one, err)
	}
	s, err := db.Instance(ctx, "1.2.3.1.1.1")
	if err != nil {
		t.Fatal(err)
	}
	if s.PixelOffset != 400 || s.PixelLength != 512 || s.Rows != 16 || s.Columns != 0 || s.Frames != 1 || s.BlobKey != "blob/1.2.3.1.1.1" {
		t.Errorf("instance %+v", s)
	}
	if s, err := db.Instance(ctx, "1.2.3.1.1.2"); err != nil || s.PixelOffset != -1 || s.PixelLength != -1 {
		t.Errorf("instance without pixels: %+v %v", s, err)
	}
	if _, err := db.Instance(ctx, "9.9"); !errors.Is(err, ErrNotFound) {
		t.Errorf("unknown instance: %v, want ErrNotFound", err)
	}

	orphans, err := db.UnreferencedBlobs(ctx, []string{"blob/1.2.3.1.1.1", "blob/gone", "blob/1.2.3.1.2.1", "blob/also-gone"})
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(orphans)
	if want := []string{"blob/also-gone", "blob/gone"}; !slices.Equal(orphans, want) {
		t.Errorf("unreferenced %v, want %v", orphans, want)
	}
}

func find(t *testing.T, db *DB, q *Query) [][]string {
	t.Helper()
	var out [][]string
	err := db.Find(context.Background(), q, func(r *Row) error {
		out = append(out, append([]string{r.StudyUID, r.SeriesUID, r.SOPUID}, r.Values...))
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func uids(rows [][]string, i int) []string {
	var out []string
	for _, r := range rows {
		out = append(out, r[i])
	}
	return out
}

const (
	tagStudyDate   = 0x00080020
	tagAccession   = 0x00080050
	tagModalities  = 0x00080061
	tagPatientName = 0x00100010
	tagStudyUID    = 0x0020000D
	tagSeriesCount = 0x00201206
	tagModality    = 0x00080060
	tagSeriesNum   = 0x00200011
	tagSOPUID      = 0x00080018
	tagInstanceNum = 0x00200013
)

func TestFind(t *testing.T) {
	db, _ := newDB(t)
	add := func(study, date, name, acc, series, mod, sop string) {
		r := record(study, series, sop, 1)
		r.Study.Date, r.Study.PatientName, r.Study.Accession, r.Series.Modality = date, name, acc, mod
		save(t, db, r, ReplaceAlways)
	}
	add("1.1", "20240101", "Doe^Jane", "50%_A", "1.1.1", "CT", "1.1.1.1")
	add("1.1", "20240101", "Doe^Jane", "50%_A", "1.1.2", "MR", "1.1.2.1")
	add("1.2", "20240301", "DOE^JOHN", "50XYA", "1.2.1", "CT", "1.2.1.1")
	add("1.3", "", "Roe^Richard", "", "1.3.1", "US", "1.3.1.1")

	studies := func(m ...Match) []string {
		t.Helper()
		return uids(find(t, db, &Query{Level: LevelStudy, Match: m}), 0)
	}
	for _, c := range []struct {
		name string
		m    []Match
		want []string
	}{
		{"none: newest StudyDate first, no date last", nil, []string{"1.2", "1.1", "1.3"}},
		{"equal", []Match{{Tag: tagPatientName, Op: Equal, Value: "Doe^Jane"}}, []string{"1.1"}},
		{"equal is case-sensitive", []Match{{Tag: tagPatientName, Op: Equal, Value: "doe^jane"}}, nil},
		{"equal fold", []Match{{Tag: tagPatientName, Op: EqualFold, Value: "doe^jane"}}, []string{"1.1"}},
		{"wildcard", []Match{{Tag: tagPatientName, Op: Wildcard, Value: "D?e^*"}}, []string{"1.1"}},
		{"wildcard fold", []Match{{Tag: tagPatientName, Op: WildcardFold, Value: "doe*"}}, []string{"1.2", "1.1"}},
		// % and _ are literal in a DICOM value: 50%_* is not 50 then anything.
		{"wildcard escapes LIKE", []Match{{Tag: tagAccession, Op: Wildcard, Value: "50%_*"}}, []string{"1.1"}},
		{"wildcard backslash", []Match{{Tag: tagAccession, Op: Wildcard, Value: `50\*`}}, nil},
		{"any of", []Match{{Tag: tagStudyUID, Op: AnyOf, Values: []string{"1.1", "1.3", "9.9"}}}, []string{"1.1", "1.3"}},
		{"range", []Match{{Tag: tagStudyDate, Op: Range, Lo: "20240101", Hi: "20240201"}}, []string{"1.1"}},
		{"range open high", []Match{{Tag: tagStudyDate, Op: Range, Lo: "20240201"}}, []string{"1.2"}},
		// An empty date is unknown, not before every date.
		{"range open low", []Match{{Tag: tagStudyDate, Op: Range, Hi: "20240201"}}, []string{"1.1"}},
		{"modalities in study", []Match{{Tag: tagModalities, Op: AnyOf, Values: []string{"MR", "US"}}}, []string{"1.1", "1.3"}},
		{"and", []Match{{Tag: tagModalities, Op: AnyOf, Values: []string{"CT"}}, {Tag: tagPatientName, Op: WildcardFold, Value: "*john"}}, []string{"1.2"}},
	} {
		if got := studies(c.m...); !slices.Equal(got, c.want) {
			t.Errorf("%s: %v, want %v", c.name, got, c.want)
		}
	}

	// Returned values, with study-level aggregates, and the order.
	rows := find(t, db, &Query{Level: LevelStudy, Return: []uint32{tagStudyDate, tagModalities, tagSeriesCount},
		Match: []Match{{Tag: tagStudyUID, Op: AnyOf, Values: []string{"1.1", "1.2"}}}})
	want := [][]string{{"1.2", "", "", "20240301", "CT", "1"}, {"1.1", "", "", "20240101", `CT\MR`, "2"}}
	if !slices.EqualFunc(rows, want, slices.Equal) {
		t.Errorf("study rows %q, want %q", rows, want)
	}
	// Series and instance levels carry their UIDs and match the levels above.
	rows = find(t, db, &Query{Level: LevelSeries, Return: []uint32{tagModality, tagSeriesNum},
		Match: []Match{{Tag: tagPatientName, Op: Equal, Value: "Doe^Jane"}}})
	want = [][]string{{"1.1", "1.1.1", "", "CT", "1"}, {"1.1", "1.1.2", "", "MR", "1"}}
	if !slices.EqualFunc(rows, want, slices.Equal) {
		t.Errorf("series rows %q, want %q", rows, want)
	}
	rows = find(t, db, &Query{Level: LevelInstance, Return: []uint32{tagSOPUID, tagInstanceNum},
		Match: []Match{{Tag: tagModality, Op: Equal, Value: "CT"}}, Limit: 1, Offset: 1})
	if len(rows) != 1 || rows[0][2] != rows[0][3] || rows[0][4] != "1" {
		t.Errorf("instance rows %q, want one with its SOP UID and number", rows)
	}

	// An attribute below the query's level, or unknown, is an error, not SQL.
	for _, q := range []*Query{
		{Level: LevelStudy, Return: []uint32{tagModality}},
		{Level: LevelSeries, Match: []Match{{Tag: tagSOPUID, Op: Equal, Value: "1"}}},
		{Level: LevelStudy, Return: []uint32{0x7FE00010}},
	} {
		if err := db.Find(t.Context(), q, func(*Row) error { return nil }); err == nil {
			t.Errorf("query %+v: no error", q)
		}
	}
	// emit's error ends Find and comes back as it is.
	stop := errors.New("stop")
	if err := db.Find(t.Context(), &Query{Level: LevelStudy}, func(*Row) error { return stop }); err != stop {
		t.Errorf("emit error: %v, want it unchanged", err)
	}
}
