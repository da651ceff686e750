package onnxgen

//go:generate go run ./cmd/onnxgen -testdata ../../testdata
