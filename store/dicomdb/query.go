package dicomdb

import (
	"context"
	"fmt"
	"strconv"
	"strings"
)

// Level is a query level.
type Level uint8

// Query levels, outermost first.
const (
	LevelStudy Level = iota
	LevelSeries
	LevelInstance
)

// column is where a queryable attribute lives: an SQL expression returning
// text (NULL is returned as ""), over the aliases st (study), se (series)
// and i (instance) that its level's FROM clause has.
type column struct {
	level Level
	expr  string
	// anyOf, when set, is how Op AnyOf matches a multi-valued attribute
	// ($ is the parameter holding the values).
	anyOf string
}

// columns maps the DICOM tags Find can match and return to their columns.
var columns = map[uint32]column{
	0x00080020: {LevelStudy, "st.study_date", ""}, // StudyDate
	0x00080030: {LevelStudy, "st.study_time", ""}, // StudyTime
	0x00080050: {LevelStudy, "st.accession", ""},  // AccessionNumber
	0x00080061: {LevelStudy, // ModalitiesInStudy: the study's series modalities, `\`-joined
		`(SELECT string_agg(DISTINCT m.modality, '\' ORDER BY m.modality) FROM dicom_series m WHERE m.study_uid = st.study_uid AND m.modality <> '')`,
		`EXISTS (SELECT 1 FROM dicom_series m WHERE m.study_uid = st.study_uid AND m.modality = ANY($))`},
	0x00080090: {LevelStudy, "st.referring", ""},    // ReferringPhysicianName
	0x00081030: {LevelStudy, "st.description", ""},  // StudyDescription
	0x00100010: {LevelStudy, "st.patient_name", ""}, // PatientName
	0x00100020: {LevelStudy, "st.patient_id", ""},   // PatientID
	0x00100021: {LevelStudy, "st.issuer", ""},       // IssuerOfPatientID
	0x00100030: {LevelStudy, "st.birth_date", ""},   // PatientBirthDate
	0x00100040: {LevelStudy, "st.sex", ""},          // PatientSex
	0x0020000D: {LevelStudy, "st.study_uid", ""},    // StudyInstanceUID
	0x00200010: {LevelStudy, "st.study_id", ""},     // StudyID
	0x00201206: {LevelStudy, // NumberOfStudyRelatedSeries
		`(SELECT count(*)::text FROM dicom_series c WHERE c.study_uid = st.study_uid)`, ""},
	0x00201208: {LevelStudy, // NumberOfStudyRelatedInstances
		`(SELECT count(*)::text FROM dicom_instances c WHERE c.study_uid = st.study_uid)`, ""},
	0x00080060: {LevelSeries, "se.modality", ""},            // Modality
	0x0008103E: {LevelSeries, "se.description", ""},         // SeriesDescription
	0x00180015: {LevelSeries, "se.body_part", ""},           // BodyPartExamined
	0x0020000E: {LevelSeries, "se.series_uid", ""},          // SeriesInstanceUID
	0x00200011: {LevelSeries, "se.series_number::text", ""}, // SeriesNumber
	0x00201209: {LevelSeries, // NumberOfSeriesRelatedInstances
		`(SELECT count(*)::text FROM dicom_instances c WHERE c.series_uid = se.series_uid)`, ""},
	0x00080016: {LevelInstance, "i.sop_class", ""},             // SOPClassUID
	0x00080018: {LevelInstance, "i.sop_uid", ""},               // SOPInstanceUID
	0x00083002: {LevelInstance, "i.transfer_syntax", ""},       // AvailableTransferSyntaxUID
	0x00200013: {LevelInstance, "i.instance_number::text", ""}, // InstanceNumber
	0x00280008: {LevelInstance, "i.frames::text", ""},          // NumberOfFrames
	0x00280010: {LevelInstance, "i.rows::text", ""},            // Rows
	0x00280011: {LevelInstance, "i.columns::text", ""},         // Columns
}

// Queryable reports whether Find can match and return the attribute tag,
// and at which level.
func Queryable(tag uint32) (Level, bool) {
	c, ok := columns[tag]
	return c.level, ok
}

// Op is how a Match compares an attribute.
type Op uint8

// Match operators. The values are compared as the text stored.
const (
	// Equal: the attribute is Value.
	Equal Op = iota
	// EqualFold: the attribute is Value, ignoring case.
	EqualFold
	// Wildcard: the attribute matches Value, where * is any run of
	// characters and ? any one character (DICOM wildcard matching).
	Wildcard
	// WildcardFold is Wildcard ignoring case.
	WildcardFold
	// AnyOf: the attribute is one of Values; for a multi-valued attribute
	// (ModalitiesInStudy), one of its values is.
	AnyOf
	// Range: the attribute is not empty and within [Lo, Hi]; "" leaves
	// that end open.
	Range
)

// Match is one matching key.
type Match struct {
	Tag    uint32
	Op     Op
	Value  string   // Equal, EqualFold, Wildcard, WildcardFold
	Values []string // AnyOf
	Lo, Hi string   // Range
}

// Query selects entities of one level.
type Query struct {
	Level Level
	// Match: every key must match (AND).
	Match []Match
	// Return: the attributes each Row carries, by tag, in this order.
	Return        []uint32
	Limit, Offset int // Limit 0: no limit
}

// Row is one matched entity: the UIDs that locate it ("" above its level)
// and the values of Query.Return, in order ("" when absent). Find reuses a
// Row and its Values for the next match.
type Row struct {
	StudyUID, SeriesUID, SOPUID string
	Values                      []string
}

// Find runs q, calling emit per match: studies newest StudyDate first, series
// by SeriesNumber, instances by InstanceNumber (absent numbers last, then UID).
func (db *DB) Find(ctx context.Context, q *Query, emit func(*Row) error) error {
	sql, args, err := q.sql()
	if err != nil {
		return err
	}
	rows, err := db.pool.Query(ctx, sql, args...)
	if err != nil {
		return fmt.Errorf("dicomdb: query: %w", err)
	}
	defer rows.Close()
	vals := make([]any, 3+len(q.Return))
	strs := make([]string, len(vals))
	for i := range vals {
		vals[i] = &strs[i]
	}
	row := &Row{Values: strs[3:]}
	for rows.Next() {
		if err := rows.Scan(vals...); err != nil {
			return fmt.Errorf("dicomdb: query: %w", err)
		}
		row.StudyUID, row.SeriesUID, row.SOPUID = strs[0], strs[1], strs[2]
		if err := emit(row); err != nil {
			return err
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("dicomdb: query: %w", err)
	}
	return nil
}

// sql builds q's statement and its arguments.
func (q *Query) sql() (string, []any, error) {
	var args []any
	arg := func(v any) string {
		args = append(args, v)
		return "$" + strconv.Itoa(len(args))
	}
	var sb strings.Builder
	sb.WriteString("SELECT st.study_uid, ")
	var from, order string
	switch q.Level {
	case LevelStudy:
		sb.WriteString("'', ''")
		from = "dicom_studies st"
		order = "st.study_date DESC, st.study_uid"
	case LevelSeries:
		sb.WriteString("se.series_uid, ''")
		from = "dicom_series se JOIN dicom_studies st ON st.study_uid = se.study_uid"
		order = "se.series_number NULLS LAST, se.series_uid"
	case LevelInstance:
		sb.WriteString("se.series_uid, i.sop_uid")
		from = "dicom_instances i JOIN dicom_series se ON se.series_uid = i.series_uid JOIN dicom_studies st ON st.study_uid = se.study_uid"
		order = "i.instance_number NULLS LAST, i.sop_uid"
	default:
		return "", nil, fmt.Errorf("dicomdb: query level %d", q.Level)
	}
	col := func(tag uint32) (column, error) {
		c, ok := columns[tag]
		if !ok || c.level > q.Level {
			return c, fmt.Errorf("dicomdb: attribute (%04X,%04X) cannot be queried at level %d", tag>>16, tag&0xFFFF, q.Level)
		}
		return c, nil
	}
	for _, t := range q.Return {
		c, err := col(t)
		if err != nil {
			return "", nil, err
		}
		sb.WriteString(", COALESCE(" + c.expr + ", '')")
	}
	sb.WriteString(" FROM " + from)
	for i, m := range q.Match {
		c, err := col(m.Tag)
		if err != nil {
			return "", nil, err
		}
		if i == 0 {
			sb.WriteString(" WHERE ")
		} else {
			sb.WriteString(" AND ")
		}
		sb.WriteString(m.condition(c, arg))
	}
	sb.WriteString(" ORDER BY " + order)
	if q.Limit > 0 {
		sb.WriteString(" LIMIT " + arg(q.Limit))
	}
	if q.Offset > 0 {
		sb.WriteString(" OFFSET " + arg(q.Offset))
	}
	return sb.String(), args, nil
}

// condition is m as an SQL condition on c.
func (m *Match) condition(c column, arg func(any) string) string {
	switch m.Op {
	case EqualFold:
		return "lower(" + c.expr + ") = lower(" + arg(m.Value) + ")"
	case Wildcard, WildcardFold:
		op := " LIKE "
		if m.Op == WildcardFold {
			op = " ILIKE "
		}
		return c.expr + op + arg(likePattern(m.Value))
	case AnyOf:
		if c.anyOf != "" {
			return strings.Replace(c.anyOf, "$", arg(m.Values), 1)
		}
		return c.expr + " = ANY(" + arg(m.Values) + ")"
	case Range:
		cond := "(" + c.expr + " <> ''"
		if m.Lo != "" {
			cond += " AND " + c.expr + " >= " + arg(m.Lo)
		}
		if m.Hi != "" {
			cond += " AND " + c.expr + " <= " + arg(m.Hi)
		}
		return cond + ")"
	}
	return c.expr + " = " + arg(m.Value)
}

// likePattern turns a DICOM wildcard pattern into a LIKE pattern: * and ?
// become % and _, and LIKE's own metacharacters are escaped.
func likePattern(v string) string {
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
	return sb.String()
}
