package dicom

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/suyashkumar/dicom/pkg/tag"

	"github.com/emberfhir/ember/fhir"
)

// Level is a query level.
type Level int

// Query levels, outermost first.
const (
	LevelStudy Level = iota
	LevelSeries
	LevelInstance
)

// Attr is a queryable attribute: its tag, VR, level and SQL.
type Attr struct {
	Tag     uint32
	Keyword string
	VR      string
	Level   Level
	col     string // SQL expression returning text
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
	{0x00080020, "StudyDate", "DA", LevelStudy, "st.study_date", matchDate},
	{0x00080030, "StudyTime", "TM", LevelStudy, "st.study_time", matchWild},
	{0x00080050, "AccessionNumber", "SH", LevelStudy, "st.accession", matchWild},
	{0x00080061, "ModalitiesInStudy", "CS", LevelStudy,
		`(SELECT string_agg(DISTINCT m.modality, '\' ORDER BY m.modality) FROM dicom_series m WHERE m.study_uid = st.study_uid AND m.modality <> '')`, matchModalities},
	{0x00080090, "ReferringPhysicianName", "PN", LevelStudy, "st.referring", matchWild},
	{0x00081030, "StudyDescription", "LO", LevelStudy, "st.description", matchWild},
	{0x00100010, "PatientName", "PN", LevelStudy, "st.patient_name", matchWild},
	{0x00100020, "PatientID", "LO", LevelStudy, "st.patient_id", matchWild},
	{0x00100021, "IssuerOfPatientID", "LO", LevelStudy, "st.issuer", matchWild},
	{0x00100030, "PatientBirthDate", "DA", LevelStudy, "st.birth_date", matchDate},
	{0x00100040, "PatientSex", "CS", LevelStudy, "st.sex", matchWild},
	{0x0020000D, "StudyInstanceUID", "UI", LevelStudy, "st.study_uid", matchUID},
	{0x00200010, "StudyID", "SH", LevelStudy, "st.study_id", matchWild},
	{0x00201206, "NumberOfStudyRelatedSeries", "IS", LevelStudy,
		`(SELECT count(*)::text FROM dicom_series c WHERE c.study_uid = st.study_uid)`, matchNone},
	{0x00201208, "NumberOfStudyRelatedInstances", "IS", LevelStudy,
		`(SELECT count(*)::text FROM dicom_instances c WHERE c.study_uid = st.study_uid)`, matchNone},
	{0x00080060, "Modality", "CS", LevelSeries, "se.modality", matchWild},
	{0x0008103E, "SeriesDescription", "LO", LevelSeries, "se.description", matchWild},
	{0x00180015, "BodyPartExamined", "CS", LevelSeries, "se.body_part", matchWild},
	{0x0020000E, "SeriesInstanceUID", "UI", LevelSeries, "se.series_uid", matchUID},
	{0x00200011, "SeriesNumber", "IS", LevelSeries, "se.series_number::text", matchInt},
	{0x00201209, "NumberOfSeriesRelatedInstances", "IS", LevelSeries,
		`(SELECT count(*)::text FROM dicom_instances c WHERE c.series_uid = se.series_uid)`, matchNone},
	{0x00080016, "SOPClassUID", "UI", LevelInstance, "i.sop_class", matchUID},
	{0x00080018, "SOPInstanceUID", "UI", LevelInstance, "i.sop_uid", matchUID},
	{0x00083002, "AvailableTransferSyntaxUID", "UI", LevelInstance, "i.transfer_syntax", matchNone},
	{0x00200013, "InstanceNumber", "IS", LevelInstance, "i.instance_number::text", matchInt},
	{0x00280008, "NumberOfFrames", "IS", LevelInstance, "i.frames::text", matchInt},
	{0x00280010, "Rows", "US", LevelInstance, "i.rows::text", matchInt},
	{0x00280011, "Columns", "US", LevelInstance, "i.columns::text", matchInt},
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
	var args []any
	arg := func(v any) string {
		args = append(args, v)
		return "$" + strconv.Itoa(len(args))
	}
	from := "dicom_studies st"
	order := "st.study_date DESC, st.study_uid"
	switch q.Level {
	case LevelSeries:
		from = "dicom_series se JOIN dicom_studies st ON st.study_uid = se.study_uid"
		order = "se.series_number NULLS LAST, se.series_uid"
	case LevelInstance:
		from = "dicom_instances i JOIN dicom_series se ON se.series_uid = i.series_uid JOIN dicom_studies st ON st.study_uid = se.study_uid"
		order = "i.instance_number NULLS LAST, i.sop_uid"
	}
	var where []string
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
		cond, err := a.condition(v, q.FuzzyPN, arg)
		if err != nil {
			return err
		}
		if cond != "" {
			where = append(where, cond)
		}
	}
	var cols []*Attr
	for i := range Attrs {
		if ret[Attrs[i].Tag] {
			cols = append(cols, &Attrs[i])
		}
	}
	var sb strings.Builder
	sb.WriteString("SELECT st.study_uid, ")
	switch q.Level {
	case LevelStudy:
		sb.WriteString("'', ''")
	case LevelSeries:
		sb.WriteString("se.series_uid, ''")
	default:
		sb.WriteString("se.series_uid, i.sop_uid")
	}
	for _, a := range cols {
		sb.WriteString(", COALESCE(" + a.col + ", '')")
	}
	sb.WriteString(" FROM " + from)
	if len(where) > 0 {
		sb.WriteString(" WHERE " + strings.Join(where, " AND "))
	}
	sb.WriteString(" ORDER BY " + order)
	if q.Limit > 0 {
		sb.WriteString(" LIMIT " + arg(q.Limit))
	}
	if q.Offset > 0 {
		sb.WriteString(" OFFSET " + arg(q.Offset))
	}
	rows, err := s.store.Pool().Query(ctx, sb.String(), args...)
	if err != nil {
		return fmt.Errorf("dicom: query: %w", err)
	}
	defer rows.Close()
	vals := make([]any, 3+len(cols))
	strs := make([]string, len(vals))
	for i := range vals {
		vals[i] = &strs[i]
	}
	for rows.Next() {
		if err := rows.Scan(vals...); err != nil {
			return fmt.Errorf("dicom: query: %w", err)
		}
		r := &Result{StudyUID: strs[0], SeriesUID: strs[1], SOPUID: strs[2]}
		for i, a := range cols {
			r.Values = append(r.Values, Value{Tag: a.Tag, VR: a.VR, Value: strs[3+i]})
		}
		if err := emit(r); err != nil {
			return err
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("dicom: query: %w", err)
	}
	return nil
}

func (a *Attr) condition(v string, fuzzy bool, arg func(any) string) (string, error) {
	switch a.match {
	case matchNone:
		return "", nil
	case matchUID:
		var uids []string
		for _, u := range strings.FieldsFunc(v, func(r rune) bool { return r == '\\' || r == ',' }) {
			if u = strings.TrimSpace(u); u != "" {
				uids = append(uids, u)
			}
		}
		if len(uids) == 0 {
			return "", nil
		}
		return a.col + " = ANY(" + arg(uids) + ")", nil
	case matchDate:
		lo, hi, isRange := strings.Cut(v, "-")
		if !isRange {
			if !validDA(v) {
				return "", fmt.Errorf("%w: %s %q is not a date (YYYYMMDD)", ErrBadQuery, a.Keyword, v)
			}
			return a.col + " = " + arg(v), nil
		}
		if (lo != "" && !validDA(lo)) || (hi != "" && !validDA(hi)) || (lo == "" && hi == "") {
			return "", fmt.Errorf("%w: %s %q is not a date range", ErrBadQuery, a.Keyword, v)
		}
		var c []string
		if lo != "" {
			c = append(c, a.col+" >= "+arg(lo))
		}
		if hi != "" {
			c = append(c, a.col+" <= "+arg(hi))
		}
		return "(" + a.col + " <> '' AND " + strings.Join(c, " AND ") + ")", nil
	case matchInt:
		if _, err := strconv.Atoi(strings.TrimSpace(v)); err != nil {
			return "", fmt.Errorf("%w: %s %q is not an integer", ErrBadQuery, a.Keyword, v)
		}
		return a.col + " = " + arg(strings.TrimSpace(v)), nil
	case matchModalities:
		var mods []string
		for _, m := range strings.FieldsFunc(v, func(r rune) bool { return r == '\\' || r == ',' }) {
			mods = append(mods, strings.TrimSpace(m))
		}
		return "EXISTS (SELECT 1 FROM dicom_series m WHERE m.study_uid = st.study_uid AND m.modality = ANY(" + arg(mods) + "))", nil
	}
	// Single value, with * and ? wildcards.
	if !strings.ContainsAny(v, "*?") {
		if a.VR == "PN" && fuzzy {
			return "lower(" + a.col + ") = lower(" + arg(v) + ")", nil
		}
		return a.col + " = " + arg(v), nil
	}
	var sb strings.Builder
	for _, r := range v {
		switch r {
		case '*':
			sb.WriteByte('%')
		case '?':
			sb.WriteByte('_')
		case '%', '_', '\\':
			sb.WriteByte('\\')
			sb.WriteRune(r)
		default:
			sb.WriteRune(r)
		}
	}
	op := " LIKE "
	if a.VR == "PN" && fuzzy {
		op = " ILIKE "
	}
	return a.col + op + arg(sb.String()), nil
}

func validDA(s string) bool { return len(s) == 8 && allDigits(s) }

// Stored is a stored instance's location and pixel layout.
type Stored struct {
	StudyUID, SeriesUID, SOPUID, SOPClass, TransferSyntax string
	BlobKey                                               string
	Size                                                  int64
	PixelOffset, PixelLength                              int64 // -1: none / undefined length
	Rows, Columns, Frames                                 int
}

// Instances lists stored instances of a study, optionally narrowed to a
// series and an instance ("" = all), in series and instance order.
func (s *Service) Instances(ctx context.Context, study, series, sop string) ([]Stored, error) {
	rows, err := s.store.Pool().Query(ctx, `SELECT i.study_uid, i.series_uid, i.sop_uid, i.sop_class, i.transfer_syntax,
		i.blob_key, i.size, COALESCE(i.pixel_offset, -1), COALESCE(i.pixel_length, -1),
		COALESCE(i.rows, 0), COALESCE(i.columns, 0), COALESCE(i.frames, 1)
		FROM dicom_instances i JOIN dicom_series se ON se.series_uid = i.series_uid
		WHERE i.study_uid = $1 AND ($2 = '' OR i.series_uid = $2) AND ($3 = '' OR i.sop_uid = $3)
		ORDER BY se.series_number NULLS LAST, i.series_uid, i.instance_number NULLS LAST, i.sop_uid`, study, series, sop)
	if err != nil {
		return nil, fmt.Errorf("dicom: instances: %w", err)
	}
	defer rows.Close()
	var out []Stored
	for rows.Next() {
		var st Stored
		if err := rows.Scan(&st.StudyUID, &st.SeriesUID, &st.SOPUID, &st.SOPClass, &st.TransferSyntax, &st.BlobKey, &st.Size,
			&st.PixelOffset, &st.PixelLength, &st.Rows, &st.Columns, &st.Frames); err != nil {
			return nil, fmt.Errorf("dicom: instances: %w", err)
		}
		if st.Frames < 1 {
			st.Frames = 1
		}
		out = append(out, st)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("dicom: instances: %w", err)
	}
	return out, nil
}
