package engine

import (
	"bytes"
	"encoding/json"
	"strconv"
	"strings"
	"time"

	"github.com/emberfhir/ember/fhir"
)

// bundleWriter assembles a Bundle around stored resource bytes without
// parsing them: entries are spliced in as raw JSON.
type bundleWriter struct {
	buf     bytes.Buffer
	entries int
}

type bundleLink struct {
	Relation string `json:"relation"`
	URL      string `json:"url"`
}

// bundleEntryMeta is everything of an entry except its resource.
type bundleEntryMeta struct {
	FullURL  string         `json:"fullUrl,omitempty"`
	Search   *entrySearch   `json:"search,omitempty"`
	Request  *entryRequest  `json:"request,omitempty"`
	Response *entryResponse `json:"response,omitempty"`
}

type entrySearch struct {
	Mode string `json:"mode"`
}

type entryRequest struct {
	Method string `json:"method"`
	URL    string `json:"url"`
}

type entryResponse struct {
	Status       string `json:"status"`
	Location     string `json:"location,omitempty"`
	Etag         string `json:"etag,omitempty"`
	LastModified string `json:"lastModified,omitempty"`
}

func newBundle(typ string, total int, links []bundleLink) *bundleWriter {
	b := &bundleWriter{}
	b.buf.WriteString(`{"resourceType":"Bundle","type":`)
	b.buf.WriteString(strconv.Quote(typ))
	b.buf.WriteString(`,"meta":{"lastUpdated":"`)
	b.buf.WriteString(fhir.FormatInstant(time.Now()))
	b.buf.WriteString(`"}`)
	if total >= 0 {
		b.buf.WriteString(`,"total":`)
		b.buf.WriteString(strconv.Itoa(total))
	}
	if len(links) > 0 {
		l, _ := json.Marshal(links) // strings only
		b.buf.WriteString(`,"link":`)
		b.buf.Write(l)
	}
	return b
}

// add appends an entry; resource may be nil (a history tombstone).
func (b *bundleWriter) add(meta bundleEntryMeta, resource []byte) {
	if b.entries == 0 {
		b.buf.WriteString(`,"entry":[`)
	} else {
		b.buf.WriteByte(',')
	}
	b.entries++
	m, _ := json.Marshal(meta) // strings only
	if resource == nil {
		b.buf.Write(m)
		return
	}
	// Splice "resource" into the metadata object: {"fullUrl":…,"resource":…,…}.
	b.buf.WriteString(`{"resource":`)
	b.buf.Write(resource)
	if len(m) > 2 {
		b.buf.WriteByte(',')
		b.buf.Write(m[1:])
	} else {
		b.buf.WriteByte('}')
	}
}

// addResponse appends a transaction/batch response entry.
func (b *bundleWriter) addResponse(resource []byte, resp bundleEntryResponse) {
	if b.entries == 0 {
		b.buf.WriteString(`,"entry":[`)
	} else {
		b.buf.WriteByte(',')
	}
	b.entries++
	b.buf.WriteByte('{')
	if resource != nil {
		b.buf.WriteString(`"resource":`)
		b.buf.Write(resource)
		b.buf.WriteByte(',')
	}
	r, _ := json.Marshal(resp) // strings and raw JSON only
	b.buf.WriteString(`"response":`)
	b.buf.Write(r)
	b.buf.WriteByte('}')
}

func (b *bundleWriter) bytes() []byte {
	if b.entries > 0 {
		b.buf.WriteByte(']')
	}
	b.buf.WriteByte('}')
	return b.buf.Bytes()
}

// ETag is the weak entity tag of a version, as ETag headers and Bundle
// entries carry it.
func ETag(version int64) string { return `W/"` + strconv.FormatInt(version, 10) + `"` }

// ParseETag reads a version from an ETag-like value: W/"3", "3" or 3.
func ParseETag(h string) (int64, bool) {
	h = strings.TrimSpace(h)
	h = strings.TrimPrefix(h, "W/")
	h = strings.Trim(h, `"`)
	v, err := strconv.ParseInt(h, 10, 64)
	return v, err == nil && v > 0
}
