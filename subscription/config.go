package subscription

import (
	"encoding/json"
	"fmt"
	"net/url"
	"strings"
	"time"

	"github.com/emberfhir/ember/fhir"
	"github.com/emberfhir/ember/smart/access"
)

// The Subscriptions R5 Backport IG's extensions Ember reads (R4 form).
const (
	backport             = "http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition/"
	extFilterCriteria    = backport + "backport-filter-criteria"
	extPayloadContent    = backport + "backport-payload-content"
	extHeartbeatPeriod   = backport + "backport-heartbeat-period"
	extTimeout           = backport + "backport-timeout"
	extMaxCount          = backport + "backport-max-count"
	statusProfile        = backport + "backport-subscription-status-r4"
	subscriptionProfile  = backport + "backport-subscription"
	emberStructure       = "https://emberfhir.org/fhir/StructureDefinition/"
	extSecret            = emberStructure + "subscription-secret"
	extOwner             = emberStructure + "subscription-owner"
	defaultPayload       = "application/fhir+json"
	defaultTimeoutSecond = 10
	maxTimeoutSecond     = 60
	defaultMaxCount      = 100
	maxMaxCount          = 1000
)

// Content levels of a notification's payload (backport-payload-content).
const (
	contentEmpty    = "empty"
	contentIDOnly   = "id-only"
	contentResource = "full-resource"
)

// settings are what delivery needs of a Subscription, read once from the
// resource and kept as JSON in its subscriptions row. The JSON names
// "heartbeat" and "end" are read by store/subdb's Claim.
type settings struct {
	Topic    string     `json:"topic"`
	Filters  []string   `json:"filters,omitempty"` // Type?query, as written
	Channel  string     `json:"channel"`           // rest-hook | websocket
	Endpoint string     `json:"endpoint,omitempty"`
	Headers  []string   `json:"headers,omitempty"` // "Name: value"
	Payload  string     `json:"payload"`           // MIME type
	Content  string     `json:"content"`           // empty | id-only | full-resource
	Heart    int64      `json:"heartbeat,omitempty"`
	Timeout  int64      `json:"timeout"`
	MaxCount int64      `json:"maxCount"`
	End      *time.Time `json:"end,omitempty"`
	Secret   string     `json:"secret,omitempty"`
	// Owner is the grant of the last writer of the Subscription who had
	// one (nil: unrestricted, written by System or with --auth none).
	Owner *Owner `json:"owner,omitempty"`
}

// Owner is the part of an access.Grant a subscription keeps: what its
// owner may read is decided from it at every match and delivery.
type Owner struct {
	Subject  string   `json:"sub,omitempty"`
	ClientID string   `json:"client,omitempty"`
	Scopes   []string `json:"scopes"`
	Patient  string   `json:"patient,omitempty"`
	FHIRUser string   `json:"fhirUser,omitempty"`
	Role     string   `json:"role,omitempty"`
}

// Grant is the owner as an access.Grant.
func (o *Owner) Grant() *access.Grant {
	if o == nil {
		return nil
	}
	return &access.Grant{Subject: o.Subject, ClientID: o.ClientID, Scopes: o.Scopes, Patient: o.Patient, FHIRUser: o.FHIRUser, Role: o.Role}
}

func ownerOf(g *access.Grant) *Owner {
	if g == nil {
		return nil
	}
	return &Owner{Subject: g.Subject, ClientID: g.ClientID, Scopes: g.Scopes, Patient: g.Patient, FHIRUser: g.FHIRUser, Role: g.Role}
}

// extension is an R4 extension, as far as Ember reads them.
type extension struct {
	URL              string      `json:"url"`
	ValueString      *string     `json:"valueString,omitempty"`
	ValueCode        *string     `json:"valueCode,omitempty"`
	ValueUnsignedInt *int64      `json:"valueUnsignedInt,omitempty"`
	ValuePositiveInt *int64      `json:"valuePositiveInt,omitempty"`
	Extension        []extension `json:"extension,omitempty"`
}

type withExtensions struct {
	Extension []extension `json:"extension"`
}

// subscriptionJSON is the part of an R4 Subscription the service reads.
type subscriptionJSON struct {
	ID          string         `json:"id"`
	Status      string         `json:"status"`
	End         string         `json:"end"`
	Criteria    string         `json:"criteria"`
	CriteriaExt withExtensions `json:"_criteria"`
	Extension   []extension    `json:"extension"`
	Channel     struct {
		Type       string         `json:"type"`
		Endpoint   string         `json:"endpoint"`
		Payload    string         `json:"payload"`
		PayloadExt withExtensions `json:"_payload"`
		Header     []string       `json:"header"`
		Extension  []extension    `json:"extension"`
	} `json:"channel"`
}

func unprocessable(expr, format string, args ...any) *fhir.Error {
	return fhir.NewError(fhir.Unprocessable, "not-supported", fmt.Sprintf(format, args...), expr)
}

// readConfig reads a Subscription's delivery settings, refusing what the
// service cannot do with an error naming the element. It does not check
// the topic or the filters against the topic (the Service does).
func readConfig(body []byte) (*subscriptionJSON, *settings, error) {
	var s subscriptionJSON
	if err := json.Unmarshal(body, &s); err != nil {
		return nil, nil, fhir.Invalid("the Subscription cannot be read: " + err.Error())
	}
	c := &settings{Topic: s.Criteria, Channel: s.Channel.Type, Endpoint: s.Channel.Endpoint, Headers: s.Channel.Header,
		Payload: s.Channel.Payload, Content: contentIDOnly, Timeout: defaultTimeoutSecond, MaxCount: defaultMaxCount}
	for _, e := range s.CriteriaExt.Extension {
		if e.URL == extFilterCriteria {
			if e.ValueString == nil || strings.TrimSpace(*e.ValueString) == "" {
				return nil, nil, unprocessable("Subscription.criteria.extension", "backport-filter-criteria needs a valueString such as Observation?patient=Patient/123")
			}
			c.Filters = append(c.Filters, strings.TrimSpace(*e.ValueString))
		}
	}
	switch c.Channel {
	case "rest-hook":
		if err := checkEndpoint(c.Endpoint); err != nil {
			return nil, nil, err
		}
	case "websocket":
	case "":
		return nil, nil, fhir.Invalid("Subscription.channel.type is required", "Subscription.channel.type")
	default:
		return nil, nil, unprocessable("Subscription.channel.type", "channel type %q is not supported: use rest-hook or websocket", c.Channel)
	}
	switch c.Payload {
	case "":
		c.Payload = defaultPayload
	case "application/fhir+json", "application/json", "application/fhir+xml", "application/xml":
	default:
		return nil, nil, unprocessable("Subscription.channel.payload", "payload %q is not supported: use application/fhir+json or application/fhir+xml", c.Payload)
	}
	for _, e := range s.Channel.PayloadExt.Extension {
		if e.URL != extPayloadContent {
			continue
		}
		if e.ValueCode == nil {
			return nil, nil, unprocessable("Subscription.channel.payload.extension", "backport-payload-content needs a valueCode")
		}
		switch *e.ValueCode {
		case contentEmpty, contentIDOnly, contentResource:
			c.Content = *e.ValueCode
		default:
			return nil, nil, unprocessable("Subscription.channel.payload.extension", "payload content %q is not supported: use empty, id-only or full-resource", *e.ValueCode)
		}
	}
	for _, h := range c.Headers {
		name, _, ok := strings.Cut(h, ":")
		if !ok || strings.TrimSpace(name) == "" || strings.ContainsAny(h, "\r\n") {
			return nil, nil, unprocessable("Subscription.channel.header", "header %q is not of the form Name: value", h)
		}
	}
	for _, e := range s.Channel.Extension {
		var err error
		switch e.URL {
		case extHeartbeatPeriod:
			c.Heart, err = positive(e, "backport-heartbeat-period", 1, 86400)
		case extTimeout:
			c.Timeout, err = positive(e, "backport-timeout", 1, maxTimeoutSecond)
		case extMaxCount:
			c.MaxCount, err = positive(e, "backport-max-count", 1, maxMaxCount)
		}
		if err != nil {
			return nil, nil, err
		}
	}
	for _, e := range s.Extension {
		if e.URL == extSecret && e.ValueString != nil {
			c.Secret = *e.ValueString
		}
	}
	if s.End != "" {
		t, err := time.Parse(time.RFC3339Nano, s.End)
		if err != nil {
			return nil, nil, fhir.Invalid("Subscription.end is not an instant", "Subscription.end")
		}
		c.End = &t
	}
	return &s, c, nil
}

// positive reads an integer extension's value within [lo, hi].
func positive(e extension, name string, lo, hi int64) (int64, error) {
	v := e.ValueUnsignedInt
	if v == nil {
		v = e.ValuePositiveInt
	}
	if v == nil || *v < lo || *v > hi {
		return 0, unprocessable("Subscription.channel.extension", "%s must be an integer from %d to %d", name, lo, hi)
	}
	return *v, nil
}

// checkEndpoint refuses a rest-hook endpoint that is not an absolute http
// or https URL. Where it may point is checked at delivery (guard.go), when
// the address it resolves to is known.
func checkEndpoint(endpoint string) error {
	if endpoint == "" {
		return fhir.Invalid("a rest-hook Subscription needs channel.endpoint", "Subscription.channel.endpoint")
	}
	u, err := url.Parse(endpoint)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.User != nil {
		return unprocessable("Subscription.channel.endpoint", "endpoint %q must be an absolute http or https URL without credentials", endpoint)
	}
	return nil
}
