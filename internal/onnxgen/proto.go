// Package onnxgen writes small ONNX models whose outputs can be computed by
// hand, for inference's tests and the demo: testdata/models/ (valid models
// and manifests) and testdata/models-bad/ (a manifest that lies). It encodes
// the few ONNX protobuf messages it needs itself with protowire (field
// numbers from onnx/onnx.proto), so no Python, onnx package or generated
// protobuf code is involved, and the bytes are the same on every run.
//
// Regenerate with `go generate ./internal/onnxgen` (see gen.go);
// a test checks the committed files equal what this package writes.
package onnxgen

import (
	"encoding/binary"
	"math"

	"google.golang.org/protobuf/encoding/protowire"
)

// ONNX TensorProto.DataType values used here.
const (
	Float  int32 = 1
	Double int32 = 11
)

// Model is an ONNX ModelProto: one graph, one opset import of the default
// domain.
type Model struct {
	IRVersion int64 // 8 when zero
	Opset     int64 // 17 when zero
	Doc       string
	Graph     Graph
}

// Graph is a GraphProto.
type Graph struct {
	Name         string
	Nodes        []Node
	Initializers []Tensor
	Inputs       []Value
	Outputs      []Value
}

// Node is a NodeProto of the default domain.
type Node struct {
	Op      string
	Name    string
	Inputs  []string
	Outputs []string
	Attrs   []Attr
}

// Attr is an AttributeProto holding an int, a float or a list of ints.
type Attr struct {
	Name string
	kind int32 // AttributeProto.AttributeType
	i    int64
	f    float32
	ints []int64
}

// Int, Ints and Float32 make attributes.
func Int(name string, v int64) Attr       { return Attr{Name: name, kind: 2, i: v} }
func Ints(name string, v ...int64) Attr   { return Attr{Name: name, kind: 7, ints: v} }
func Float32(name string, v float32) Attr { return Attr{Name: name, kind: 1, f: v} }

// Tensor is a float32 initializer (TensorProto with raw_data).
type Tensor struct {
	Name string
	Dims []int64
	Data []float32
}

// Value is a ValueInfoProto of a tensor; a negative dimension is written as
// the symbolic dimension "N".
type Value struct {
	Name     string
	ElemType int32
	Shape    []int64
}

// Marshal encodes m as ONNX protobuf bytes, fields in ascending order.
func (m Model) Marshal() []byte {
	ir, opset := m.IRVersion, m.Opset
	if ir == 0 {
		ir = 8
	}
	if opset == 0 {
		opset = 17
	}
	var b []byte
	b = appendVarint(b, 1, uint64(ir))                           // ir_version
	b = appendString(b, 2, "ember-onnxgen")                      // producer_name
	b = appendString(b, 6, m.Doc)                                // doc_string
	b = appendMessage(b, 7, m.Graph.marshal())                   // graph
	b = appendMessage(b, 8, appendVarint(nil, 2, uint64(opset))) // opset_import{version}
	return b
}

func (g Graph) marshal() []byte {
	var b []byte
	for _, n := range g.Nodes {
		b = appendMessage(b, 1, n.marshal()) // node
	}
	b = appendString(b, 2, g.Name) // name
	for _, t := range g.Initializers {
		b = appendMessage(b, 5, t.marshal()) // initializer
	}
	for _, v := range g.Inputs {
		b = appendMessage(b, 11, v.marshal()) // input
	}
	for _, v := range g.Outputs {
		b = appendMessage(b, 12, v.marshal()) // output
	}
	return b
}

func (n Node) marshal() []byte {
	var b []byte
	for _, s := range n.Inputs {
		b = appendString(b, 1, s) // input
	}
	for _, s := range n.Outputs {
		b = appendString(b, 2, s) // output
	}
	b = appendString(b, 3, n.Name) // name
	b = appendString(b, 4, n.Op)   // op_type
	for _, a := range n.Attrs {
		b = appendMessage(b, 5, a.marshal()) // attribute
	}
	return b
}

func (a Attr) marshal() []byte {
	var b []byte
	b = appendString(b, 1, a.Name) // name
	switch a.kind {
	case 1:
		b = protowire.AppendTag(b, 2, protowire.Fixed32Type) // f
		b = protowire.AppendFixed32(b, math.Float32bits(a.f))
	case 2:
		b = appendVarint(b, 3, uint64(a.i)) // i
	case 7:
		for _, i := range a.ints { // ints (proto2: not packed)
			b = appendVarint(b, 8, uint64(i))
		}
	}
	b = appendVarint(b, 20, uint64(a.kind)) // type
	return b
}

func (t Tensor) marshal() []byte {
	var b []byte
	for _, d := range t.Dims {
		b = appendVarint(b, 1, uint64(d)) // dims
	}
	b = appendVarint(b, 2, uint64(Float)) // data_type
	b = appendString(b, 8, t.Name)        // name
	raw := make([]byte, 4*len(t.Data))
	for i, f := range t.Data {
		binary.LittleEndian.PutUint32(raw[4*i:], math.Float32bits(f))
	}
	b = protowire.AppendTag(b, 9, protowire.BytesType) // raw_data
	return protowire.AppendBytes(b, raw)
}

func (v Value) marshal() []byte {
	var shape []byte
	for _, d := range v.Shape {
		var dim []byte
		if d < 0 {
			dim = appendString(nil, 2, "N") // dim_param
		} else {
			dim = appendVarint(nil, 1, uint64(d)) // dim_value
		}
		shape = appendMessage(shape, 1, dim) // TensorShapeProto.dim
	}
	tensor := appendVarint(nil, 1, uint64(v.ElemType)) // TypeProto.Tensor.elem_type
	tensor = appendMessage(tensor, 2, shape)           // shape
	typ := appendMessage(nil, 1, tensor)               // TypeProto.tensor_type
	b := appendString(nil, 1, v.Name)                  // ValueInfoProto.name
	return appendMessage(b, 2, typ)                    // type
}

func appendVarint(b []byte, num protowire.Number, v uint64) []byte {
	b = protowire.AppendTag(b, num, protowire.VarintType)
	return protowire.AppendVarint(b, v)
}

// appendString leaves out empty strings, as proto3 and ONNX's own writers
// do for unset optional fields.
func appendString(b []byte, num protowire.Number, s string) []byte {
	if s == "" {
		return b
	}
	b = protowire.AppendTag(b, num, protowire.BytesType)
	return protowire.AppendString(b, s)
}

func appendMessage(b []byte, num protowire.Number, msg []byte) []byte {
	b = protowire.AppendTag(b, num, protowire.BytesType)
	return protowire.AppendBytes(b, msg)
}
