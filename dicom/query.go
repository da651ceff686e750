package dicom

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/suyashkumar/dicom/pkg/tag"

	"github.com/emberfhir/ember/fhir"
	"github.com/emberfhir/ember/store/dicomdb"
)

// Level is a query level.
type Level int

// Query levels, outermost first.
const (
	LevelStudy Level = iota
	LevelSeries
	LevelInstance
)

// Attr is a queryable attribute: its tag, VR, level and how it matches.
// Where it is stored is store/dicomdb's business (dicomdb.Queryable).
type Attr struct {
	Tag     uint32
	Keyword string
	VR      string
	Level   Level
	match   matchKind
}

type matchKind int

const (
	matchNone       matchKind = iota // return-only
	matchWild                        // single value / wildcard
	matchUID                         // list of UIDs
	matchDate                        // date range
	matchInt                         // exact integer
	matchModalities                  // ModalitiesInStudy: any series modality
)

// Attrs are the attributes QIDO-RS and C-FIND match and return.
var Attrs = []Attr{
	{0x00080020, "StudyDate", "DA", LevelStudy, matchDate},
	{0x00080030, "StudyTime", "TM", LevelStudy, matchWild},
	{0x00080050, "AccessionNumber", "SH", LevelStudy, matchWild},
	{0x00080061, "ModalitiesInStudy", "CS", LevelStudy, matchModalities},
	{0x00080090, "ReferringPhysicianName", "PN", LevelStudy, matchWild},
	{0x00081030, "StudyDescription", "LO", LevelStudy, matchWild},
	{0x00100010, "PatientName", "PN", LevelStudy, matchWild},
	{0x00100020, "PatientID", "LO", LevelStudy, matchWild},
	{0x00100021, "IssuerOfPatientID", "LO", LevelStudy, matchWild},
	{0x00100030, "PatientBirthDate", "DA", LevelStudy, matchDate},
	{0x00100040, "PatientSex", "CS", LevelStudy, matchWild},
	{0x0020000D, "StudyInstanceUID", "UI", LevelStudy, matchUID},
	{0x00200010, "StudyID", "SH", LevelStudy, matchWild},
	{0x00201206, "NumberOfStudyRelatedSeries", "IS", LevelStudy, matchNone},
	{0x00201208, "NumberOfStudyRelatedInstances", "IS", LevelStudy, matchNone},
	{0x00080060, "Modality", "CS", LevelSeries, matchWild},
	{0x0008103E, "SeriesDescription", "LO", LevelSeries, matchWild},
	{0x00180015, "BodyPartExamined", "CS", LevelSeries, matchWild},
	{0x0020000E, "SeriesInstanceUID", "UI", LevelSeries, matchUID},
	{0x00200011, "SeriesNumber", "IS", LevelSeries, matchInt},
	{0x00201209, "NumberOfSeriesRelatedInstances", "IS", LevelSeries, matchNone},
	{0x00080016, "SOPClassUID", "UI", LevelInstance, matchUID},
	{0x00080018, "SOPInstanceUID", "UI", LevelInstance, matchUID},
	{0x00083002, "AvailableTransferSyntaxUID", "UI", LevelInstance, matchNone},
	{0x00200013, "InstanceNumber", "IS", LevelInstance, matchInt},
	{0x00280008, "NumberOfFrames", "IS", LevelInstance, matchInt},
	{0x00280010, "Rows", "US", LevelInstance, matchInt},
	{0x00280011, "Columns", "US", LevelInstance, matchInt},
}

// defaultReturn are the attributes each level returns without includefield.
var defaultReturn = map[Level][]uint32{
	LevelStudy: {0x00080020, 0x00080030, 0x00080050, 0x00080061, 0x00080090, 0x00100010, 0x00100020,
		0x00100030, 0x00100040, 0x0020000D, 0x00200010, 0x00201206, 0x00201208, 0x00081030},
	LevelSeries:   {0x00080060, 0x0008103E, 0x0020000E, 0x00200011, 0x00201209, 0x00180015},
	LevelInstance: {0x00080016, 0x00080018, 0x00083002, 0x00200013, 0x00280010, 0x00280011, 0x00280008},
}

// AttrByTag finds a queryable attribute.
func AttrByTag(t uint32) *Attr {
	for i := range Attrs {
		if Attrs[i].Tag == t {
			return &Attrs[i]
		}
	}
	return nil
}

// ParseTag reads an attribute given as 8 hex digits or a keyword.
func ParseTag(s string) (uint32, error) {
	if len(s) == 8 {
		if v, err := strconv.ParseUint(s, 16, 32); err == nil {
			return uint32(v), nil
		}
	}
	for i := range Attrs {
		if Attrs[i].Keyword == s {
			return Attrs[i].Tag, nil
		}
	}
	info, err := tag.FindByKeyword(s)
	if err != nil {
		return 0, fmt.Errorf("unknown attribute %q", s)
	}
	return uint32(info.Tag.Group)<<16 | uint32(info.Tag.Element), nil
}

// ErrBadQuery: a matching value that cannot be applied (400 / C-FIND A900).
var ErrBadQuery = errors.New("dicom: bad query")

// Query is a QIDO-RS or C-FIND query.
type Query struct {
	Level Level
	// Match: values by tag ("" = universal match: return only).
	Match map[uint32]string
	// Include: extra attributes to return; IncludeAll returns every one
	// of this level and above.
	Include    []uint32
	IncludeAll bool
	// FuzzyPN makes PatientName and ReferringPhysicianName matching
	// case-insensitive.
	FuzzyPN       bool
	Limit, Offset int // Limit 0: no limit
}

// Value is one attribute of a result.
type Value struct {
	Tag   uint32
	VR    string
	Value string // multiple values joined by `\`; "" = empty
}

// Result is one matched entity: its attributes in tag order, and the UIDs
// that locate it.
type Result struct {
	Values                      []Value
	StudyUID, SeriesUID, SOPUID string
}

// Run executes q, calling emit per match in order.
func (s *Service) Run(ctx context.Context, q *Query, emit func(*Result) error) error {
	dq := &dicomdb.Query{Level: dbLevel(q.Level), Limit: q.Limit, Offset: q.Offset}
	ret := map[uint32]bool{}
	for _, t := range defaultReturn[q.Level] {
		ret[t] = true
	}
	for _, t := range q.Include {
		if a := AttrByTag(t); a != nil && a.Level <= q.Level {
			ret[t] = true
		}
	}
	if q.IncludeAll {
		for _, a := range Attrs {
			if a.Level <= q.Level {
				ret[a.Tag] = true
			}
		}
	}
	for t, v := range q.Match {
		// PostgreSQL text holds neither (SQLSTATE 22021): such a value
		// matches nothing and must not fail as a database error.
		if !fhir.StorableText(v) {
			return fmt.Errorf("%w: the value of (%04X,%04X) holds a NUL byte or invalid UTF-8", ErrBadQuery, t>>16, t&0xFFFF)
		}
		a := AttrByTag(t)
		if a == nil || a.Level > q.Level {
			// Unsupported keys: C-FIND returns them empty; QIDO ignores.
			continue
		}
		ret[t] = true
		if v == "" || v == "*" {
			continue
		}
		m, ok, err := a.condition(v, q.FuzzyPN)
		if err != nil {
			return err
		}
		if ok {
			dq.Match = append(dq.Match, m)
		}
	}
	var cols []*Attr
	for i := range Attrs {
		if ret[Attrs[i].Tag] {
			cols = append(cols, &Attrs[i])
			dq.Return = append(dq.Return, Attrs[i].Tag)
		}
	}
	return s.db.Find(ctx, dq, func(row *dicomdb.Row) error {
		r := &Result{StudyUID: row.StudyUID, SeriesUID: row.SeriesUID, SOPUID: row.SOPUID, Values: make([]Value, len(cols))}
		for i, a := range cols {
			r.Values[i] = Value{Tag: a.Tag, VR: a.VR, Value: row.Values[i]}
		}
		return emit(r)
	})
}

// dbLevel is l as the metadata store names it.
func dbLevel(l Level) dicomdb.Level {
	switch l {
	case LevelSeries:
		return dicomdb.LevelSeries
	case LevelInstance:
		return dicomdb.LevelInstance
	}
	return dicomdb.LevelStudy
}

// condition is the matching key that value v of a asks for; false: v
// matches everything.
func (a *Attr) condition(v string, fuzzy bool) (dicomdb.Match, bool, error) {
	m := dicomdb.Match{Tag: a.Tag}
	switch a.match {
	case matchNone:
		return m, false, nil
	case matchUID:
		for _, u := range strings.FieldsFunc(v, func(r rune) bool { return r == '\\' || r == ',' }) {
			if u = strings.TrimSpace(u); u != "" {
				m.Values = append(m.Values, u)
			}
		}
		m.Op = dicomdb.AnyOf
		return m, len(m.Values) > 0, nil
	case matchDate:
		lo, hi, isRange := strings.Cut(v, "-")
		if !isRange {
			if !validDA(v) {
				return m, false, fmt.Errorf("%w: %s %q is not a date (YYYYMMDD)", ErrBadQuery, a.Keyword, v)
			}
			m.Op, m.Value = dicomdb.Equal, v
			return m, true, nil
		}
		if (lo != "" && !validDA(lo)) || (hi != "" && !validDA(hi)) || (lo == "" && hi == "") {
			return m, false, fmt.Errorf("%w: %s %q is not a date range", ErrBadQuery, a.Keyword, v)
		}
		m.Op, m.Lo, m.Hi = dicomdb.Range, lo, hi
		return m, true, nil
	case matchInt:
		if _, err := strconv.Atoi(strings.TrimSpace(v)); err != nil {
			return m, false, fmt.Errorf("%w: %s %q is not an integer", ErrBadQuery, a.Keyword, v)
		}
		m.Op, m.Value = dicomdb.Equal, strings.TrimSpace(v)
		return m, true, nil
	case matchModalities:
		for _, mod := range strings.FieldsFunc(v, func(r rune) bool { return r == '\\' || r == ',' }) {
			m.Values = append(m.Values, strings.TrimSpace(mod))
		}
		m.Op = dicomdb.AnyOf
		return m, true, nil
	}
	// Single value, with * and ? wildcards; PN optionally ignoring case.
	fold := a.VR == "PN" && fuzzy
	switch {
	case strings.ContainsAny(v, "*?") && fold:
		m.Op = dicomdb.WildcardFold
	case strings.ContainsAny(v, "*?"):
		m.Op = dicomdb.Wildcard
	case fold:
		m.Op = dicomdb.EqualFold
	default:
		m.Op = dicomdb.Equal
	}
	m.Value = v
	return m, true, nil
}

func validDA(s string) bool { return len(s) == 8 && allDigits(s) }

// Stored is a stored instance's location and pixel layout, as the metadata
// store reads it (an alias, so retrieval passes the rows on without a copy).
type Stored = dicomdb.Stored

// Instances lists stored instances of a study, optionally narrowed to a
// series and an instance ("" = all), in series and instance order.
func (s *Service) Instances(ctx context.Context, study, series, sop string) ([]Stored, error) {
	return s.db.Instances(ctx, study, series, sop)
}
