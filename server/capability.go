package server

import (
	"encoding/json"
	"net/http"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/emberfhir/ember/fhir"
	"github.com/emberfhir/ember/fhir/spec"
)

// typeInteractions are the type- and instance-level interactions dispatch
// serves for every resource type. The CapabilityStatement is built from this
// list, and a test exercises each entry, so the statement stays true.
var typeInteractions = []string{"read", "vread", "update", "delete", "history-instance", "history-type", "create"}

// systemInteractions are the system-level interactions dispatch serves.
var systemInteractions = []string{"history-system"}

type capabilityStatement struct {
	ResourceType   string      `json:"resourceType"`
	Status         string      `json:"status"`
	Date           string      `json:"date"`
	Publisher      string      `json:"publisher"`
	Kind           string      `json:"kind"`
	Software       capSoftware `json:"software"`
	Implementation capImpl     `json:"implementation"`
	FHIRVersion    string      `json:"fhirVersion"`
	Format         []string    `json:"format"`
	Rest           []capRest   `json:"rest"`
}

type capSoftware struct {
	Name    string `json:"name"`
	Version string `json:"version"`
}

type capImpl struct {
	Description string `json:"description"`
	URL         string `json:"url"`
}

type capRest struct {
	Mode        string           `json:"mode"`
	Resource    []capResource    `json:"resource"`
	Interaction []capInteraction `json:"interaction"`
}

type capResource struct {
	Type              string           `json:"type"`
	Interaction       []capInteraction `json:"interaction"`
	Versioning        string           `json:"versioning"`
	ReadHistory       bool             `json:"readHistory"`
	UpdateCreate      bool             `json:"updateCreate"`
	ConditionalRead   string           `json:"conditionalRead"`
	ConditionalDelete string           `json:"conditionalDelete"`
}

type capInteraction struct {
	Code string `json:"code"`
}

func interactions(codes []string) []capInteraction {
	out := make([]capInteraction, len(codes))
	for i, c := range codes {
		out[i] = capInteraction{Code: c}
	}
	return out
}

// buildCapability renders the CapabilityStatement once at start-up.
func (s *Server) buildCapability(now time.Time) ([]byte, error) {
	version := s.cfg.Version
	if version == "" {
		version = "dev"
	}
	cs := capabilityStatement{
		ResourceType:   "CapabilityStatement",
		Status:         "active",
		Date:           fhir.FormatInstant(now),
		Publisher:      "Ember",
		Kind:           "instance",
		Software:       capSoftware{Name: "Ember", Version: version},
		Implementation: capImpl{Description: "Ember FHIR R4 server", URL: s.base},
		FHIRVersion:    "4.0.1",
		Format:         []string{"json"},
	}
	rest := capRest{Mode: "server", Interaction: interactions(systemInteractions)}
	for _, t := range spec.ResourceTypes() {
		rest.Resource = append(rest.Resource, capResource{
			Type:              t,
			Interaction:       interactions(typeInteractions),
			Versioning:        "versioned-update",
			ReadHistory:       true,
			UpdateCreate:      true,
			ConditionalRead:   "full-support",
			ConditionalDelete: "not-supported",
		})
	}
	cs.Rest = []capRest{rest}
	return json.Marshal(cs)
}

// capabilities serves GET /fhir/metadata.
func (s *Server) capabilities(c *gin.Context, _ []string) {
	s.writeJSON(c, http.StatusOK, s.capability)
}
