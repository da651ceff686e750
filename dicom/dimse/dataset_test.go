package dimse

import (
	"maps"
	"testing"
)

func TestIdentifierRoundTrip(t *testing.T) {
	m := FindMatch{
		0x0020000D: "1.2.3",                 // UI, odd length: NUL padded
		0x00100010: "Doe^Jane",              // PN
		0x00080061: `CT\MR`,                 // multi-valued CS
		0x00280010: "512",                   // US binary
		0x00201208: "12",                    // IS
		0x99990010: "not in the dictionary", // dropped
	}
	for _, explicit := range []bool{false, true} {
		b := appendIdentifier(nil, m, explicit, "STUDY")
		got, err := decodeIdentifier(b, explicit)
		if err != nil {
			t.Fatal(err)
		}
		want := maps.Clone(map[uint32]string(m))
		delete(want, 0x99990010)
		want[tagQueryRetrieveLevel] = "STUDY"
		if !maps.Equal(got, want) {
			t.Errorf("explicit=%v: got %v, want %v", explicit, got, want)
		}
		if len(b)%2 != 0 {
			t.Errorf("odd identifier length %d", len(b))
		}
	}
}

func TestIdentifierCharset(t *testing.T) {
	b := appendIdentifier(nil, FindMatch{0x00100010: "Müller^Jörg"}, true, "STUDY")
	got, err := decodeIdentifier(b, true)
	if err != nil {
		t.Fatal(err)
	}
	if got[tagSpecificCharacterSet] != "ISO_IR 192" || got[0x00100010] != "Müller^Jörg" {
		t.Errorf("got %v", got)
	}
	b = appendIdentifier(nil, FindMatch{0x00100010: "Doe"}, true, "STUDY")
	if got, _ := decodeIdentifier(b, true); got[tagSpecificCharacterSet] != "" {
		t.Errorf("ASCII match got a character set: %v", got)
	}
}

func TestIdentifierSequencesAndErrors(t *testing.T) {
	// Explicit: a study UID, then an undefined-length sequence holding one
	// undefined-length item, then a patient name.
	b := appendIdentifier(nil, FindMatch{0x0020000D: ""}, true, "")
	b = append(b, 0x08, 0x00, 0x15, 0x11, 'S', 'Q', 0, 0, 0xff, 0xff, 0xff, 0xff,
		0xfe, 0xff, 0x00, 0xe0, 0xff, 0xff, 0xff, 0xff,
		0x08, 0x00, 0x50, 0x11, 'U', 'I', 2, 0, '1', 0,
		0xfe, 0xff, 0x0d, 0xe0, 0, 0, 0, 0,
		0xfe, 0xff, 0xdd, 0xe0, 0, 0, 0, 0)
	b = append(b, 0x10, 0x00, 0x10, 0x00, 'P', 'N', 2, 0, 'A', ' ')
	got, err := decodeIdentifier(b, true)
	if err != nil {
		t.Fatal(err)
	}
	if v, ok := got[0x00081115]; !ok || v != "" || got[0x00100010] != "A" || len(got) != 3 {
		t.Errorf("got %v", got)
	}
	for _, bad := range [][]byte{
		{0x10, 0x00, 0x10, 0x00, 'P', 'N', 20, 0, 'A', ' '}, // length beyond data
		{0x10, 0x00, 0x10}, // truncated header
		{0x08, 0x00, 0x15, 0x11, 'S', 'Q', 0, 0, 0xff, 0xff, 0xff, 0xff}, // unterminated sequence
	} {
		if _, err := decodeIdentifier(bad, true); err == nil {
			t.Errorf("decodeIdentifier(%x) succeeded", bad)
		}
	}
}

func TestCommandRoundTrip(t *testing.T) {
	b := appendResponse(nil, &response{field: 0x8001, respondingTo: 7, status: 0xA700,
		sopClassUID: uidCTImage, sopInstanceUID: "1.2.3", errorComment: "x"})
	c, err := parseCommand(b)
	if err != nil {
		t.Fatal(err)
	}
	if c.field != 0x8001 || c.respondingTo != 7 || c.status != 0xA700 || c.sopClassUID != uidCTImage ||
		c.sopInstanceUID != "1.2.3" || c.hasDataSet() {
		t.Errorf("got %+v", c)
	}
	if _, err := parseCommand(b[:len(b)-3]); err == nil {
		t.Error("truncated command parsed")
	}
}

// TestIdentifierUnknownReturnKeys checks return keys outside the dictionary
// are answered with the VR the request used.
func TestIdentifierUnknownReturnKeys(t *testing.T) {
	req := []byte{0x09, 0x00, 0x10, 0x10, 'L', 'O', 0, 0} // private (0009,1010) LO, empty
	req = append(req, 0x08, 0x00, 0x15, 0x11, 'S', 'Q', 0, 0, 0xff, 0xff, 0xff, 0xff,
		0xfe, 0xff, 0xdd, 0xe0, 0, 0, 0, 0) // empty sequence return key
	keys, vrs, err := decodeIdentifierVRs(req, true)
	if err != nil {
		t.Fatal(err)
	}
	m := FindMatch{0x00091010: "abc", 0x00081115: "", 0x00091020: "not requested"}
	for k, v := range keys {
		if _, ok := m[k]; !ok {
			m[k] = v
		}
	}
	got, gotVRs, err := decodeIdentifierVRs(appendIdentifierFor(nil, m, true, "STUDY", vrs), true)
	if err != nil {
		t.Fatal(err)
	}
	if got[0x00091010] != "abc" || gotVRs[0x00091010] != "LO" || gotVRs[0x00081115] != "SQ" {
		t.Errorf("got %v %v", got, gotVRs)
	}
	if _, ok := got[0x00091020]; ok {
		t.Errorf("unrequested unknown tag encoded: %v", got)
	}
	// Implicit VR: unknown requested tags go back as text.
	_, ivrs, err := decodeIdentifierVRs([]byte{0x09, 0x00, 0x10, 0x10, 0, 0, 0, 0}, false)
	if err != nil {
		t.Fatal(err)
	}
	got, err = decodeIdentifier(appendIdentifierFor(nil, FindMatch{0x00091010: "x"}, false, "STUDY", ivrs), false)
	if err != nil || got[0x00091010] != "x" {
		t.Errorf("implicit: %v %v", got, err)
	}
}
