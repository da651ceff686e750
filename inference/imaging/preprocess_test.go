package imaging_test

import (
	"reflect"
	"strings"
	"testing"

	"github.com/emberfhir/ember/inference/imaging"
)

func TestParsePreprocess(t *testing.T) {
	for _, raw := range []string{"", "null", "{}", " { } "} {
		p, err := imaging.ParsePreprocess([]byte(raw))
		if err != nil || !reflect.DeepEqual(p, imaging.DefaultPreprocess()) {
			t.Errorf("%q: %+v, %v; want the defaults", raw, p, err)
		}
	}
	d := imaging.DefaultPreprocess()
	if !d.Rescale || !d.InvertMonochrome1 || d.Window.Mode != imaging.WindowDataset || d.Frame.Rule != imaging.FrameFirst ||
		d.Resize != imaging.ResizeBilinear || d.Mean[0] != 0 || d.Std[0] != 1 {
		t.Errorf("defaults: %+v", d)
	}

	p, err := imaging.ParsePreprocess([]byte(`{
		"modalities": ["CT", "mr"], "bodyParts": ["CHEST"], "rescale": false,
		"window": {"center": 40, "width": 400}, "invertMonochrome1": false, "frame": "middle",
		"resize": "nearest", "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]}`))
	if err != nil {
		t.Fatal(err)
	}
	want := imaging.Preprocess{Modalities: []string{"CT", "MR"}, BodyParts: []string{"CHEST"},
		Window: imaging.Window{Mode: imaging.WindowExplicit, Center: 40, Width: 400}, Frame: imaging.Frame{Rule: imaging.FrameMiddle},
		Resize: imaging.ResizeNearest, Mean: []float64{0.485, 0.456, 0.406}, Std: []float64{0.229, 0.224, 0.225}}
	if !reflect.DeepEqual(p, want) {
		t.Errorf("got %+v\nwant %+v", p, want)
	}
	if err := p.Validate(3); err != nil {
		t.Error(err)
	}
	if err := p.Validate(1); err == nil || err.Error() != "preprocess.mean: 3 values for 1 channels" {
		t.Errorf("Validate(1): %v", err)
	}

	for raw, want := range map[string]imaging.Window{
		`{"window": "dataset"}`:                    {Mode: imaging.WindowDataset},
		`{"window": "none"}`:                       {Mode: imaging.WindowNone},
		`{"window": {"center": -600, "width": 1}}`: {Mode: imaging.WindowExplicit, Center: -600, Width: 1},
	} {
		p, err := imaging.ParsePreprocess([]byte(raw))
		if err != nil || p.Window != want {
			t.Errorf("%s: %+v, %v", raw, p.Window, err)
		}
	}
	for raw, want := range map[string]imaging.Frame{
		`{"frame": "first"}`: {Rule: imaging.FrameFirst},
		`{"frame": "last"}`:  {Rule: imaging.FrameLast},
		`{"frame": 0}`:       {Rule: imaging.FrameIndex, Index: 0},
		`{"frame": 12}`:      {Rule: imaging.FrameIndex, Index: 12},
	} {
		p, err := imaging.ParsePreprocess([]byte(raw))
		if err != nil || p.Frame != want {
			t.Errorf("%s: %+v, %v", raw, p.Frame, err)
		}
	}

	for raw, msg := range map[string]string{
		`{"modality": ["CT"]}`:                          `preprocess: unknown field "modality"`,
		`{"window": {"center": 1, "width": 2, "x": 1}}`: `preprocess.window: unknown field "x"`,
		`{"window": {"center": 40, "width": 0}}`:        `preprocess.window.width: must be >= 1`,
		`{"window": {"center": 40}}`:                    `preprocess.window.width: required`,
		`{"window": {"width": 40}}`:                     `preprocess.window.center: required`,
		`{"window": "auto"}`:                            `preprocess.window: "auto" is not`,
		`{"window": 3}`:                                 `preprocess.window: must be`,
		`{"window": {"center": "40", "width": 400}}`:    `preprocess.window.center: must be a number`,
		`{"frame": "centre"}`:                           `preprocess.frame: "centre" is not`,
		`{"frame": -1}`:                                 `preprocess.frame: -1 is not`,
		`{"frame": 1.5}`:                                `preprocess.frame: 1.5 is not`,
		`{"resize": "bicubic"}`:                         `preprocess.resize: "bicubic" is not`,
		`{"rescale": "yes"}`:                            `preprocess.rescale: must be true or false`,
		`{"mean": []}`:                                  `preprocess.mean: no values`,
		`{"std": [1, 0, 1]}`:                            `preprocess.std[1]: must not be 0`,
		`{"modalities": [""]}`:                          `preprocess.modalities[0]: must not be empty`,
		`{"modalities": "CT"}`:                          `preprocess.modalities: must be an array`,
		`[]`:                                            `preprocess: must be an object`,
		`{} {}`:                                         `preprocess: data after the value`,
	} {
		_, err := imaging.ParsePreprocess([]byte(raw))
		if err == nil || !strings.HasPrefix(err.Error(), msg) {
			t.Errorf("%s: %v, want %q…", raw, err, msg)
		}
	}

	p, _ = imaging.ParsePreprocess([]byte(`{"mean": [1, 2]}`))
	if err := p.Validate(3); err == nil || err.Error() != "preprocess.mean: 2 values for 3 channels" {
		t.Errorf("Validate: %v", err)
	}
	if err := p.Validate(2); err == nil {
		t.Error("Validate(2): no error")
	}
}

func TestMatches(t *testing.T) {
	any := imaging.DefaultPreprocess()
	if !any.Matches("", "") || !any.Matches("CT", "HEAD") {
		t.Error("empty filters must match anything")
	}
	p, _ := imaging.ParsePreprocess([]byte(`{"modalities": ["CT", "MR"], "bodyParts": ["Chest"]}`))
	for _, c := range []struct {
		modality, body string
		want           bool
	}{
		{"CT", "CHEST", true}, {"mr", "chest ", true}, {"CR", "CHEST", false}, {"CT", "", false}, {"", "CHEST", false}, {"CT", "ABDOMEN", false},
	} {
		if got := p.Matches(c.modality, c.body); got != c.want {
			t.Errorf("Matches(%q, %q) = %v", c.modality, c.body, got)
		}
	}
}

func TestSelect(t *testing.T) {
	in := func(series, sop string, n int, modality string) imaging.InstanceMeta {
		return imaging.InstanceMeta{SeriesInstanceUID: series, SOPInstanceUID: sop, InstanceNumber: n, Modality: modality, Rows: 8, Columns: 8}
	}
	study := []imaging.InstanceMeta{
		in("1.1", "a", 1, "CT"), in("1.1", "b", 2, "CT"),
		in("1.2", "e", 5, "CT"), in("1.2", "c", 3, "CT"), in("1.2", "d", 4, "CT"), in("1.2", "f", 4, "CT"),
		in("1.3", "x", 1, "SR"), in("1.3", "y", 2, "SR"), in("1.3", "z", 3, "SR"), in("1.3", "w", 4, "SR"), in("1.3", "v", 5, "SR"),
		{SeriesInstanceUID: "1.4", SOPInstanceUID: "nopix1", Modality: "CT"}, {SeriesInstanceUID: "1.4", SOPInstanceUID: "nopix2", Modality: "CT"},
		{SeriesInstanceUID: "1.4", SOPInstanceUID: "nopix3", Modality: "CT"}, {SeriesInstanceUID: "1.4", SOPInstanceUID: "nopix4", Modality: "CT"},
		{SeriesInstanceUID: "1.4", SOPInstanceUID: "nopix5", Modality: "CT"},
	}
	ct, _ := imaging.ParsePreprocess([]byte(`{"modalities": ["CT"]}`))
	// Series 1.2 (4 CT instances with pixels); by number c3 d4 f4 e5: index 2 is f.
	if got, ok := imaging.Select(study, ct); !ok || got.SOPInstanceUID != "f" {
		t.Errorf("CT: %+v %v, want f", got, ok)
	}
	// Any modality: SR series 1.3 has 5 (x1 y2 z3 w4 v5): z.
	if got, ok := imaging.Select(study, imaging.DefaultPreprocess()); !ok || got.SOPInstanceUID != "z" {
		t.Errorf("any: %+v %v, want z", got, ok)
	}
	// Ties go to the smallest series UID.
	tie := []imaging.InstanceMeta{in("2.9", "p", 1, "CR"), in("2.1", "q", 1, "CR")}
	if got, _ := imaging.Select(tie, imaging.DefaultPreprocess()); got.SOPInstanceUID != "q" {
		t.Errorf("tie: %+v", got)
	}
	mr, _ := imaging.ParsePreprocess([]byte(`{"modalities": ["MR"]}`))
	if _, ok := imaging.Select(study, mr); ok {
		t.Error("MR: selected from a study without MR")
	}
	if _, ok := imaging.Select(nil, ct); ok {
		t.Error("empty study: selected")
	}
}
