package trail

import (
	"crypto"
	"crypto/rsa"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/go-jose/go-jose/v4"

	"github.com/emberfhir/ember/store/auditdb"
)

// Signer signs checkpoints with the server's key.
type Signer interface {
	// Sign returns a compact JWS over payload, with the key's id.
	Sign(payload []byte) (kid, jws string, err error)
}

// RSASigner signs with an RSA key (the SMART signing key) as RS256.
type RSASigner struct {
	KeyID string
	Key   *rsa.PrivateKey
}

// Sign implements Signer.
func (s RSASigner) Sign(payload []byte) (string, string, error) {
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.RS256, Key: s.Key},
		(&jose.SignerOptions{}).WithHeader(jose.HeaderKey("kid"), s.KeyID))
	if err != nil {
		return "", "", fmt.Errorf("audit: signer: %w", err)
	}
	jws, err := signer.Sign(payload)
	if err != nil {
		return "", "", fmt.Errorf("audit: sign checkpoint: %w", err)
	}
	compact, err := jws.CompactSerialize()
	if err != nil {
		return "", "", fmt.Errorf("audit: sign checkpoint: %w", err)
	}
	return s.KeyID, compact, nil
}

// checkpointClaims is what a checkpoint signs.
type checkpointClaims struct {
	Seq  int64  `json:"seq"`
	Hash string `json:"hash"` // hex
	At   int64  `json:"iat"`
}

func signCheckpoint(s Signer, seq int64, hash []byte, at time.Time) (auditdb.Checkpoint, error) {
	payload, err := json.Marshal(checkpointClaims{Seq: seq, Hash: hex.EncodeToString(hash), At: at.Unix()})
	if err != nil {
		return auditdb.Checkpoint{}, fmt.Errorf("audit: checkpoint: %w", err)
	}
	kid, jws, err := s.Sign(payload)
	if err != nil {
		return auditdb.Checkpoint{}, err
	}
	return auditdb.Checkpoint{Seq: seq, Hash: hash, KeyID: kid, JWS: jws}, nil
}

// Keys finds the public key a checkpoint names by its key id.
type Keys func(kid string) (crypto.PublicKey, error)

// verifyCheckpoint checks cp's signature and that it signs its own seq and
// hash.
func verifyCheckpoint(cp auditdb.Checkpoint, keys Keys) error {
	if keys == nil {
		return errors.New("no key to verify it with")
	}
	jws, err := jose.ParseSigned(cp.JWS, []jose.SignatureAlgorithm{jose.RS256})
	if err != nil {
		return fmt.Errorf("unreadable signature: %w", err)
	}
	key, err := keys(cp.KeyID)
	if err != nil {
		return fmt.Errorf("key %s: %w", cp.KeyID, err)
	}
	payload, err := jws.Verify(key)
	if err != nil {
		return fmt.Errorf("signature does not verify with key %s", cp.KeyID)
	}
	var c checkpointClaims
	if err := json.Unmarshal(payload, &c); err != nil {
		return fmt.Errorf("unreadable signed claims: %w", err)
	}
	if c.Seq != cp.Seq || c.Hash != hex.EncodeToString(cp.Hash) {
		return fmt.Errorf("the signed link (seq %d) differs from the stored one", c.Seq)
	}
	return nil
}
