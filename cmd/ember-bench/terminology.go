package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"time"
)

// expandCodes is the size of the value set expand1k expands (issue 16:
// $expand of a 1,000-code ValueSet answers in ≤ 20 ms).
const (
	expandCodes  = 1000
	expandRounds = 200
)

// expandBench stores a CodeSystem of expandCodes concepts (ten groups of a
// hundred, nested, as real hierarchies are) and a ValueSet drawing all of
// them through an is-a filter, checks one expansion, then times
// ValueSet/$expand?url= one request at a time.
func expandBench(ctx context.Context, e *env) ([]figure, error) {
	const system, vsURL = "http://ember.bench/cs/expand1k", "http://ember.bench/vs/expand1k"
	type concept struct {
		Code    string    `json:"code"`
		Display string    `json:"display"`
		Concept []concept `json:"concept,omitempty"`
	}
	root := concept{Code: "root", Display: "Everything"}
	for g := range 10 {
		group := concept{Code: fmt.Sprintf("g%d", g), Display: fmt.Sprintf("Group %d", g)}
		for i := range expandCodes/10 - 1 {
			group.Concept = append(group.Concept, concept{Code: fmt.Sprintf("c%d-%d", g, i), Display: fmt.Sprintf("Concept %d of group %d", i, g)})
		}
		root.Concept = append(root.Concept, group)
	}
	cs, err := json.Marshal(map[string]any{"resourceType": "CodeSystem", "id": "expand1k", "url": system, "status": "active",
		"content": "complete", "concept": []concept{root}})
	if err != nil {
		return nil, err
	}
	if err := e.do(ctx, http.MethodPut, e.fhirBase+"/CodeSystem/expand1k", cs, http.StatusOK, http.StatusCreated); err != nil {
		return nil, err
	}
	vs := fmt.Sprintf(`{"resourceType":"ValueSet","id":"expand1k","url":%q,"status":"active","compose":{"include":[{"system":%q,"filter":[{"property":"concept","op":"descendent-of","value":"root"}]}]}}`, vsURL, system)
	if err := e.do(ctx, http.MethodPut, e.fhirBase+"/ValueSet/expand1k", []byte(vs), http.StatusOK, http.StatusCreated); err != nil {
		return nil, err
	}
	target := e.fhirBase + "/ValueSet/$expand?url=" + url.QueryEscape(vsURL)
	if err := checkExpansion(ctx, e, target); err != nil {
		return nil, err
	}
	lat := make([]time.Duration, 0, expandRounds)
	start := time.Now()
	for i := range expandRounds + 20 {
		t := time.Now()
		if err := e.do(ctx, http.MethodGet, target, nil, http.StatusOK); err != nil {
			return nil, err
		}
		if i >= 20 { // the first ones warm connections and caches
			lat = append(lat, time.Since(t))
		}
	}
	s := summarize(lat, time.Since(start))
	return []figure{
		{"expand_1k_p50", ms(s.p50), "ms"},
		{"expand_1k_p99", ms(s.p99), "ms"},
	}, nil
}

// checkExpansion fails unless target's expansion holds all expandCodes codes.
func checkExpansion(ctx context.Context, e *env, target string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, target, nil)
	if err != nil {
		return err
	}
	req.Header.Set("Accept", "application/fhir+json")
	if e.token != "" {
		req.Header.Set("Authorization", "Bearer "+e.token)
	}
	resp, err := e.client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	var vs struct {
		Expansion struct {
			Total    int
			Contains []json.RawMessage
		}
	}
	if err := json.Unmarshal(body, &vs); err != nil || resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: status %d: %.300s", target, resp.StatusCode, body)
	}
	if vs.Expansion.Total != expandCodes || len(vs.Expansion.Contains) != expandCodes {
		return fmt.Errorf("GET %s: total %d, %d codes; want %d", target, vs.Expansion.Total, len(vs.Expansion.Contains), expandCodes)
	}
	return nil
}
