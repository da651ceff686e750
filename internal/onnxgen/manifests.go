package onnxgen

// The manifests are written out as text, not from inference/model's type,
// so that they read as a user would write them and a change to the Go type
// cannot silently change the fixtures.

const meanIntensityManifest = `{
  "name": "mean-intensity",
  "version": "1.0.0",
  "description": "Test model: the sigmoid of the mean of the preprocessed image (the dataset's VOI window mapped to [0,1]).",
  "input": {"name": "image", "shape": [1, 1, 64, 64], "type": "float32"},
  "preprocess": {
    "modalities": ["CT", "MR"],
    "rescale": true,
    "window": "dataset",
    "invertMonochrome1": true,
    "frame": "first",
    "resize": "bilinear",
    "mean": [0.0],
    "std": [1.0]
  },
  "output": {"name": "mean", "activation": "sigmoid"},
  "findings": [
    {"index": 0,
     "code": {"system": "http://example.org/fhir/CodeSystem/ember-test", "code": "mean-intensity", "display": "Mean intensity (test)"},
     "threshold": 0.6,
     "above": {"system": "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation", "code": "H", "display": "High"},
     "below": {"system": "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation", "code": "N", "display": "Normal"},
     "unit": "probability"}
  ],
  "report": {
    "code": {"system": "http://loinc.org", "code": "18748-4", "display": "Diagnostic imaging study"},
    "category": [{"system": "http://loinc.org", "code": "LP29684-5", "display": "Radiology"}],
    "conclusion": "Mean intensity test model (not a medical device).",
    "status": "preliminary"
  }
}
`

const convPoolManifest = `{
  "name": "conv-pool",
  "version": "1.0.0",
  "description": "Test model: a fixed 3x3 convolution, global average pooling and a dense layer to two classes.",
  "input": {"name": "pixels", "shape": [1, 3, 32, 32], "type": "float32"},
  "preprocess": {
    "window": "dataset",
    "resize": "bilinear",
    "mean": [0.5, 0.5, 0.5],
    "std": [0.25, 0.25, 0.25]
  },
  "output": {"name": "logits", "activation": "softmax"},
  "findings": [
    {"index": 0,
     "code": {"system": "http://example.org/fhir/CodeSystem/ember-test", "code": "edges", "display": "Horizontal edges (test)"},
     "threshold": 0.5,
     "above": {"system": "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation", "code": "POS", "display": "Positive"},
     "below": {"system": "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation", "code": "NEG", "display": "Negative"},
     "unit": "probability"},
    {"index": 1,
     "code": {"system": "http://example.org/fhir/CodeSystem/ember-test", "code": "brightness", "display": "Brightness (test)"},
     "threshold": 0.5,
     "above": {"system": "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation", "code": "POS", "display": "Positive"},
     "below": {"system": "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation", "code": "NEG", "display": "Negative"},
     "unit": "probability"}
  ],
  "report": {
    "code": {"system": "http://loinc.org", "code": "18748-4", "display": "Diagnostic imaging study"},
    "category": [{"system": "http://loinc.org", "code": "LP29684-5", "display": "Radiology"}],
    "conclusion": "Convolution test model (not a medical device)."
  }
}
`

const demoManifest = `{
  "name": "demo",
  "version": "1.0.0",
  "description": "Demo, not a medical device: flags CT images whose mean intensity in a soft-tissue window (centre 40 HU, width 400 HU) is above 0.35 of the window, a mean of about -20 HU.",
  "input": {"name": "image", "shape": [1, 1, 64, 64], "type": "float32"},
  "preprocess": {
    "modalities": ["CT"],
    "rescale": true,
    "window": {"center": 40, "width": 400},
    "frame": "middle",
    "resize": "bilinear",
    "mean": [0.0],
    "std": [1.0]
  },
  "output": {"name": "logit", "activation": "sigmoid"},
  "findings": [
    {"index": 0,
     "code": {"system": "http://example.org/fhir/CodeSystem/ember-demo", "code": "high-density", "display": "High-density content (demo)"},
     "threshold": 0.5,
     "above": {"system": "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation", "code": "POS", "display": "Positive"},
     "below": {"system": "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation", "code": "NEG", "display": "Negative"},
     "unit": "probability"}
  ],
  "report": {
    "code": {"system": "http://loinc.org", "code": "18748-4", "display": "Diagnostic imaging study"},
    "category": [{"system": "http://loinc.org", "code": "LP29684-5", "display": "Radiology"}],
    "conclusion": "Ember demo model: high-density content screen (not a medical device).",
    "status": "preliminary"
  }
}
`

// lyingShapeManifest describes mean-intensity's model with three channels
// where the model takes one.
const lyingShapeManifest = `{
  "name": "lying-shape",
  "version": "1.0.0",
  "description": "Fixture: the model takes [1,1,64,64]; this manifest claims [1,3,64,64]. Loading must refuse it.",
  "input": {"name": "image", "shape": [1, 3, 64, 64], "type": "float32"},
  "preprocess": {},
  "output": {"name": "mean", "activation": "sigmoid"},
  "findings": [
    {"index": 0,
     "code": {"system": "http://example.org/fhir/CodeSystem/ember-test", "code": "mean-intensity", "display": "Mean intensity (test)"},
     "threshold": 0.5}
  ],
  "report": {
    "code": {"system": "http://loinc.org", "code": "18748-4", "display": "Diagnostic imaging study"}
  }
}
`

const modelsReadme = `# testdata/models: generated test and demo models

Written by ` + "`go generate ./internal/onnxgen`" + ` (do not edit; a test checks these bytes
equal what the generator writes). Each model is NAME.onnx plus its manifest NAME.json; every output
can be computed by hand from the input. This directory is also the demo's ` + "`--models-dir`" + `.

- ` + "`mean-intensity`" + `: input "image" [1,1,64,64] → output "mean" [1,1], the mean of all input values
  (ReduceMean, Flatten); the manifest applies the sigmoid. CT and MR.
- ` + "`conv-pool`" + `: input "pixels" [1,3,32,32] → a fixed 3×3 convolution (weights in
  internal/onnxgen/models.go), global average pool, a 2×2 dense layer → output "logits"
  [1,2]; the manifest applies the softmax. Any modality.
- ` + "`demo`" + `: input "image" [N,1,64,64] → output "logit" [N,1] = 16 × (mean − 0.35); with the
  manifest's soft-tissue window (40/400 HU) and sigmoid, "high-density content" is positive when the
  image's mean is above about −20 HU. CT. A demo, not a medical device.
`

const badReadme = `# testdata/models-bad: manifests that lie

Written by ` + "`go generate ./internal/onnxgen`" + ` (do not edit). Kept out of testdata/models so
the demo directory loads; tests load these to see them refused.

- ` + "`lying-shape`" + `: mean-intensity's model ([1,1,64,64]) with a manifest claiming input shape
  [1,3,64,64].
`
