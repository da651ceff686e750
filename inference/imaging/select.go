package imaging

import (
	"cmp"
	"slices"
)

// InstanceMeta is what Select needs to know of a stored instance (the
// metadata tables have it; no file is opened).
type InstanceMeta struct {
	SOPInstanceUID    string
	SeriesInstanceUID string
	Modality          string // the series' Modality
	BodyPart          string // the series' BodyPartExamined
	InstanceNumber    int
	Rows, Columns     int // 0: no pixel data (a report, a presentation state…)
}

// Select picks the instance of a study a single-image model reads: among
// the instances with pixels whose series passes p's filters, the largest
// series (most instances; ties: the smallest SeriesInstanceUID), and in it
// the middle instance by InstanceNumber (then SOPInstanceUID): index n/2
// of n, like the "middle" frame rule, i.e. the central slice of a CT or
// MR volume and the only image of a radiograph. false: nothing matches.
func Select(study []InstanceMeta, p Preprocess) (InstanceMeta, bool) {
	series := make(map[string][]InstanceMeta)
	for _, in := range study {
		if in.Rows <= 0 || in.Columns <= 0 || !p.Matches(in.Modality, in.BodyPart) {
			continue
		}
		series[in.SeriesInstanceUID] = append(series[in.SeriesInstanceUID], in)
	}
	var best []InstanceMeta
	for uid, ins := range series {
		if len(ins) > len(best) || len(ins) == len(best) && uid < best[0].SeriesInstanceUID {
			best = ins
		}
	}
	if len(best) == 0 {
		return InstanceMeta{}, false
	}
	slices.SortFunc(best, func(a, b InstanceMeta) int {
		return cmp.Or(cmp.Compare(a.InstanceNumber, b.InstanceNumber), cmp.Compare(a.SOPInstanceUID, b.SOPInstanceUID))
	})
	return best[len(best)/2], true
}
