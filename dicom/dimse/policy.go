package dimse

import (
	"fmt"
	"strings"
)

// Perm is what a calling AE may ask of the server. Every admitted AE may
// ask for C-ECHO.
type Perm uint8

const (
	// PermStore allows C-STORE.
	PermStore Perm = 1 << iota
	// PermFind allows C-FIND.
	PermFind
	// PermAll allows every service Ember provides.
	PermAll = PermStore | PermFind
)

func (p Perm) String() string {
	var s []string
	if p&PermStore != 0 {
		s = append(s, "store")
	}
	if p&PermFind != 0 {
		s = append(s, "find")
	}
	if len(s) == 0 {
		return "echo"
	}
	return strings.Join(s, "+")
}

// AnyAE is the AEPolicy key that stands for every calling AE not listed.
const AnyAE = "*"

// AEPolicy maps calling AE titles to what they may do; AnyAE covers AEs
// not listed. An AE neither listed nor covered is refused at association.
type AEPolicy map[string]Perm

// ParseAEPolicy reads a comma-separated list of entries NAME or
// NAME:perm+perm…, perms being store, find, echo and all. A plain NAME may
// do everything (echo, store and find); NAME:echo only verify. NAME may be
// "*" for any calling AE. An empty list gives a nil policy.
func ParseAEPolicy(s string) (AEPolicy, error) {
	var pol AEPolicy
	for _, entry := range strings.Split(s, ",") {
		entry = strings.TrimSpace(entry)
		if entry == "" {
			continue
		}
		name, perms, hasPerms := strings.Cut(entry, ":")
		name = strings.TrimSpace(name)
		if err := checkAETitle(name); err != nil {
			return nil, err
		}
		p := PermAll
		if hasPerms {
			p = 0
			for _, tok := range strings.Split(perms, "+") {
				switch strings.ToLower(strings.TrimSpace(tok)) {
				case "store":
					p |= PermStore
				case "find":
					p |= PermFind
				case "echo":
				case "all":
					p |= PermAll
				default:
					return nil, fmt.Errorf("dimse: AE %q: unknown permission %q (want store, find, echo or all)", name, tok)
				}
			}
		}
		if pol == nil {
			pol = AEPolicy{}
		}
		if old, dup := pol[name]; dup && old != p {
			return nil, fmt.Errorf("dimse: AE %q listed twice with different permissions", name)
		}
		pol[name] = p
	}
	return pol, nil
}

// checkAETitle accepts AnyAE or a title of 1–16 printable ASCII
// characters other than backslash (PS3.5 AE).
func checkAETitle(name string) error {
	if name == AnyAE {
		return nil
	}
	if name == "" || len(name) > 16 {
		return fmt.Errorf("dimse: AE title %q must have 1 to 16 characters", name)
	}
	for i := 0; i < len(name); i++ {
		if c := name[i]; c < 0x20 || c > 0x7E || c == '\\' {
			return fmt.Errorf("dimse: AE title %q holds a character AE titles cannot", name)
		}
	}
	return nil
}

// lookup returns what ae may do and whether it may associate at all.
func (p AEPolicy) lookup(ae string) (Perm, bool) {
	if p == nil {
		return PermAll, true
	}
	if v, ok := p[ae]; ok {
		return v, true
	}
	v, ok := p[AnyAE]
	return v, ok
}
