package external

import (
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// IssuerConfig is one accepted OpenID provider.
type IssuerConfig struct {
	// URL is the issuer exactly as the provider's discovery document and
	// its tokens' "iss" claim spell it (trailing slash included).
	URL string
	// Audience is the value the token's "aud" must contain. Empty requires
	// SkipAudienceCheck, so that accepting any audience is a decision.
	Audience string
	// SkipAudienceCheck accepts tokens for any audience of this issuer.
	SkipAudienceCheck bool
	// ScopeClaim holds the granted scopes: a space-separated string
	// ("scope", the default) or an array of strings (e.g. "scp").
	ScopeClaim string
	// FHIRUserClaim holds the user's FHIR resource (default "fhirUser").
	FHIRUserClaim string
	// PatientClaim holds the patient launch context (default "patient").
	PatientClaim string
}

// Config configures a Verifier. Only Issuers is required.
type Config struct {
	Issuers []IssuerConfig
	// CacheSize bounds the verified-token cache (default 10000 tokens).
	CacheSize int
	// RetryMin and RetryMax bound the backoff between discovery attempts
	// of an unreachable provider (defaults 1s and 1m).
	RetryMin, RetryMax time.Duration
	// DiscoveryTimeout bounds one discovery attempt (default 10s).
	DiscoveryTimeout time.Duration
	// HTTPClient fetches discovery documents and keys (default: a client
	// with a 10s timeout, so a hung provider cannot stall key refreshes).
	HTTPClient *http.Client
	// Now is the clock for expiry checks (default time.Now).
	Now func() time.Time
}

const (
	defaultScopeClaim    = "scope"
	defaultFHIRUserClaim = "fhirUser"
	defaultPatientClaim  = "patient"
)

// ParseIssuerFlag parses one value of the repeatable --oidc-issuer flag:
//
//	URL[,aud=AUDIENCE][,scope-claim=CLAIM][,fhiruser-claim=CLAIM][,patient-claim=CLAIM][,skip-aud]
//
// for example
//
//	--oidc-issuer 'https://login.example.org/realms/hospital,aud=https://fhir.example.org,scope-claim=scp'
//
// Either aud= or skip-aud is required: accepting tokens minted for any
// client of the provider must be explicit. The URL must be https, except on
// a loopback host (development and tests).
func ParseIssuerFlag(s string) (IssuerConfig, error) {
	parts := strings.Split(s, ",")
	c := IssuerConfig{URL: strings.TrimSpace(parts[0])}
	for _, p := range parts[1:] {
		p = strings.TrimSpace(p)
		k, v, hasValue := strings.Cut(p, "=")
		if hasValue && v == "" {
			return IssuerConfig{}, fmt.Errorf("oidc issuer %q: empty value for %s", c.URL, k)
		}
		switch {
		case k == "aud" && hasValue:
			c.Audience = v
		case k == "scope-claim" && hasValue:
			c.ScopeClaim = v
		case k == "fhiruser-claim" && hasValue:
			c.FHIRUserClaim = v
		case k == "patient-claim" && hasValue:
			c.PatientClaim = v
		case k == "skip-aud" && !hasValue:
			c.SkipAudienceCheck = true
		default:
			return IssuerConfig{}, fmt.Errorf("oidc issuer %q: unknown option %q (want aud=, scope-claim=, fhiruser-claim=, patient-claim=, skip-aud)", c.URL, p)
		}
	}
	if err := c.validate(); err != nil {
		return IssuerConfig{}, err
	}
	return c.withDefaults(), nil
}

func (c IssuerConfig) validate() error {
	u, err := url.Parse(c.URL)
	if err != nil || u.Host == "" || (u.Scheme != "https" && u.Scheme != "http") {
		return fmt.Errorf("oidc issuer %q: not an absolute http(s) URL", c.URL)
	}
	if u.Scheme == "http" && !isLoopback(u.Hostname()) {
		// Keys fetched over plain http could be swapped by anyone on the path.
		return fmt.Errorf("oidc issuer %q: must use https (http only on loopback)", c.URL)
	}
	if c.Audience == "" && !c.SkipAudienceCheck {
		return fmt.Errorf("oidc issuer %q: set aud=AUDIENCE, or skip-aud to accept any audience", c.URL)
	}
	if c.Audience != "" && c.SkipAudienceCheck {
		return fmt.Errorf("oidc issuer %q: aud= and skip-aud are exclusive", c.URL)
	}
	return nil
}

func (c IssuerConfig) withDefaults() IssuerConfig {
	if c.ScopeClaim == "" {
		c.ScopeClaim = defaultScopeClaim
	}
	if c.FHIRUserClaim == "" {
		c.FHIRUserClaim = defaultFHIRUserClaim
	}
	if c.PatientClaim == "" {
		c.PatientClaim = defaultPatientClaim
	}
	return c
}

func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
