package dicom_test

import (
	"testing"

	"github.com/emberfhir/ember/dicom"
	"github.com/emberfhir/ember/store/dicomdb"
)

// Every attribute QIDO-RS and C-FIND offer has a column in the metadata
// store, at the same level: the two tables cannot drift apart unnoticed.
func TestAttrsQueryable(t *testing.T) {
	levels := map[dicom.Level]dicomdb.Level{
		dicom.LevelStudy: dicomdb.LevelStudy, dicom.LevelSeries: dicomdb.LevelSeries, dicom.LevelInstance: dicomdb.LevelInstance,
	}
	for _, a := range dicom.Attrs {
		lvl, ok := dicomdb.Queryable(a.Tag)
		if !ok {
			t.Errorf("%s (%08X): no column in store/dicomdb", a.Keyword, a.Tag)
		} else if lvl != levels[a.Level] {
			t.Errorf("%s (%08X): level %d in store/dicomdb, %d here", a.Keyword, a.Tag, lvl, a.Level)
		}
	}
}
