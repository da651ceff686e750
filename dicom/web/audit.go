package web

import (
	"net/http"
	"net/url"
	"sort"
	"strings"

	"github.com/emberfhir/ember/audit"
)

// Classify names a DICOMweb request for the audit trail: STOW-RS a create,
// WADO-RS (instances, metadata, frames, rendered, bulk data) a read,
// QIDO-RS a query; the study, series or instance UIDs of its path are the
// entities. QIDO matching values are kept only for UIDs, dates and
// modalities: names and patient IDs are redacted.
func Classify(r *http.Request) (string, audit.Action, []string, string) {
	parts := strings.Split(strings.Trim(r.URL.Path, "/"), "/")
	var uids []string
	for i := 0; i+1 < len(parts); i++ {
		switch parts[i] {
		case "studies", "series", "instances":
			if validUID(parts[i+1]) {
				uids = append(uids, "urn:oid:"+parts[i+1])
			}
		}
	}
	if r.Method == http.MethodPost {
		return "STOW-RS", audit.Create, uids, ""
	}
	last := parts[len(parts)-1]
	switch last {
	case "studies", "series", "instances":
		return "QIDO-RS", audit.Execute, uids, redactQIDO(r.URL.Query())
	}
	return "WADO-RS", audit.Read, uids, ""
}

func redactQIDO(q url.Values) string {
	if len(q) == 0 {
		return ""
	}
	keys := make([]string, 0, len(q))
	for k := range q {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	for _, k := range keys {
		kl := strings.ToLower(k)
		keep := strings.Contains(kl, "uid") || strings.Contains(kl, "date") || strings.Contains(kl, "modalit") ||
			strings.HasPrefix(k, "0020000") || kl == "limit" || kl == "offset" || kl == "includefield" || kl == "fuzzymatching"
		for _, v := range q[k] {
			if b.Len() > 0 {
				b.WriteByte('&')
			}
			b.WriteString(url.QueryEscape(k) + "=")
			if keep {
				b.WriteString(url.QueryEscape(v))
			} else {
				b.WriteString(audit.Redacted)
			}
		}
	}
	return b.String()
}
