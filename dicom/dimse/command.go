package dimse

import (
	"encoding/binary"
	"fmt"
)

// DIMSE command fields (PS3.7 §E.1).
const (
	cmdCStoreRQ  uint16 = 0x0001
	cmdCFindRQ   uint16 = 0x0020
	cmdCEchoRQ   uint16 = 0x0030
	cmdCCancelRQ uint16 = 0x0FFF
	cmdResponse  uint16 = 0x8000 // OR-ed into the request's field

	dataSetAbsent  uint16 = 0x0101
	dataSetPresent uint16 = 0x0000
)

// Command set tags (group 0000).
const (
	tagCommandGroupLength  uint32 = 0x00000000
	tagAffectedSOPClass    uint32 = 0x00000002
	tagCommandField        uint32 = 0x00000100
	tagMessageID           uint32 = 0x00000110
	tagMessageIDRespondTo  uint32 = 0x00000120
	tagPriority            uint32 = 0x00000700
	tagCommandDataSetType  uint32 = 0x00000800
	tagStatus              uint32 = 0x00000900
	tagErrorComment        uint32 = 0x00000902
	tagAffectedSOPInstance uint32 = 0x00001000
)

// command is the part of a DIMSE command set Ember reads.
type command struct {
	field            uint16
	messageID        uint16
	respondingTo     uint16
	dataSetType      uint16
	status           uint16
	sopClassUID      string
	sopInstanceUID   string
	hasDataSetType   bool
	hasCommandField  bool
	hasMessageIDResp bool
}

func (c *command) hasDataSet() bool { return c.hasDataSetType && c.dataSetType != dataSetAbsent }

// parseCommand decodes a command set (always implicit VR little endian).
func parseCommand(b []byte) (command, error) {
	var c command
	for len(b) > 0 {
		if len(b) < 8 {
			return c, fmt.Errorf("command set: truncated element header")
		}
		tag := uint32(binary.LittleEndian.Uint16(b[0:2]))<<16 | uint32(binary.LittleEndian.Uint16(b[2:4]))
		n := binary.LittleEndian.Uint32(b[4:8])
		if uint64(n) > uint64(len(b)-8) {
			return c, fmt.Errorf("command set: element (%04x,%04x) length %d exceeds command", tag>>16, tag&0xffff, n)
		}
		v := b[8 : 8+n]
		b = b[8+n:]
		if tag>>16 != 0 {
			return c, fmt.Errorf("command set: element (%04x,%04x) outside group 0000", tag>>16, tag&0xffff)
		}
		u16 := func() uint16 {
			if len(v) >= 2 {
				return binary.LittleEndian.Uint16(v)
			}
			return 0
		}
		switch tag {
		case tagAffectedSOPClass:
			c.sopClassUID = uidString(v)
		case tagAffectedSOPInstance:
			c.sopInstanceUID = uidString(v)
		case tagCommandField:
			c.field, c.hasCommandField = u16(), len(v) == 2
		case tagMessageID:
			c.messageID = u16()
		case tagMessageIDRespondTo:
			c.respondingTo, c.hasMessageIDResp = u16(), len(v) == 2
		case tagStatus:
			c.status = u16()
		case tagCommandDataSetType:
			c.dataSetType, c.hasDataSetType = u16(), len(v) == 2
		}
	}
	if !c.hasCommandField {
		return c, fmt.Errorf("command set: no Command Field")
	}
	return c, nil
}

// response is a DIMSE response command set to encode.
type response struct {
	field          uint16
	respondingTo   uint16
	status         uint16
	sopClassUID    string
	sopInstanceUID string
	dataSet        bool
	errorComment   string
}

// appendResponse encodes r as an implicit VR little endian command set.
func appendResponse(b []byte, r *response) []byte {
	start := len(b)
	b = appendElemU32(b, tagCommandGroupLength, 0)
	if r.sopClassUID != "" {
		b = appendElemStr(b, tagAffectedSOPClass, r.sopClassUID, 0)
	}
	b = appendElemU16(b, tagCommandField, r.field)
	b = appendElemU16(b, tagMessageIDRespondTo, r.respondingTo)
	dst := dataSetAbsent
	if r.dataSet {
		dst = dataSetPresent
	}
	b = appendElemU16(b, tagCommandDataSetType, dst)
	b = appendElemU16(b, tagStatus, r.status)
	if r.errorComment != "" {
		ec := r.errorComment
		if len(ec) > 64 { // LO
			ec = ec[:64]
		}
		b = appendElemStr(b, tagErrorComment, ec, ' ')
	}
	if r.sopInstanceUID != "" {
		b = appendElemStr(b, tagAffectedSOPInstance, r.sopInstanceUID, 0)
	}
	binary.LittleEndian.PutUint32(b[start+8:], uint32(len(b)-start-12))
	return b
}

func appendTag(b []byte, tag uint32) []byte {
	b = binary.LittleEndian.AppendUint16(b, uint16(tag>>16))
	return binary.LittleEndian.AppendUint16(b, uint16(tag))
}

func appendElemU16(b []byte, tag uint32, v uint16) []byte {
	b = appendTag(b, tag)
	b = binary.LittleEndian.AppendUint32(b, 2)
	return binary.LittleEndian.AppendUint16(b, v)
}

func appendElemU32(b []byte, tag uint32, v uint32) []byte {
	b = appendTag(b, tag)
	b = binary.LittleEndian.AppendUint32(b, 4)
	return binary.LittleEndian.AppendUint32(b, v)
}

// appendElemStr appends an implicit VR string element padded to even length.
func appendElemStr(b []byte, tag uint32, s string, pad byte) []byte {
	n := len(s) + len(s)&1
	b = appendTag(b, tag)
	b = binary.LittleEndian.AppendUint32(b, uint32(n))
	b = append(b, s...)
	if len(s)&1 == 1 {
		b = append(b, pad)
	}
	return b
}
