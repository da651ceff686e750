package authserver

import (
	"errors"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics count the token endpoint's answers.
type metrics struct {
	tokens *prometheus.CounterVec // grant_type, outcome
}

// newMetrics registers the counters on reg (nil: counted, not exported).
// A second Server on one registry (tests) shares the first one's.
func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{tokens: prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "ember_auth_token_requests_total",
		Help: "Token endpoint requests by grant type (authorization_code, refresh_token, client_credentials, other) " +
			"and outcome: issued, or the OAuth error code of the refusal (invalid_grant, invalid_client, …; server_error).",
	}, []string{"grant_type", "outcome"})}
	if reg == nil {
		return m, nil
	}
	if err := reg.Register(m.tokens); err != nil {
		var are prometheus.AlreadyRegisteredError
		if !errors.As(err, &are) {
			return nil, err
		}
		m.tokens = are.ExistingCollector.(*prometheus.CounterVec)
	}
	return m, nil
}

// tokenOutcomes are the outcome label's values besides "issued": the error
// codes the token endpoint answers with. Any other code counts as "other",
// so the label stays bounded whatever a future refusal says.
var tokenOutcomes = map[string]bool{
	"invalid_request": true, "invalid_client": true, "invalid_grant": true, "unauthorized_client": true,
	"unsupported_grant_type": true, "invalid_scope": true, "temporarily_unavailable": true, "slow_down": true,
}

// token counts one token request: grantType as the client sent it, err as
// tokenResponse returned it.
func (m *metrics) token(grantType string, err error) {
	switch grantType {
	case "authorization_code", "refresh_token", "client_credentials":
	default:
		grantType = "other"
	}
	outcome := "issued"
	if err != nil {
		var oe *oauthErr
		switch {
		case !errors.As(err, &oe):
			outcome = "server_error"
		case tokenOutcomes[oe.code]:
			outcome = oe.code
		default:
			outcome = "other"
		}
	}
	m.tokens.WithLabelValues(grantType, outcome).Inc()
}
