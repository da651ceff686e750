package authserver

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"regexp"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"golang.org/x/crypto/argon2"

	"github.com/emberfhir/ember/smart/scope"
	"github.com/emberfhir/ember/store"
	"github.com/emberfhir/ember/store/authdb"
)

// User is an end user who logs in to authorize apps.
type User struct {
	Username string
	Password string // plain on Add only; stored as an argon2id hash
	Role     string // admin, doctor, nurse, pharmacist, receptionist, patient
	FHIRUser string // Practitioner/ID, Patient/ID, RelatedPerson/ID or Person/ID
}

var fhirUserRE = regexp.MustCompile(`^(Practitioner|PractitionerRole|Patient|RelatedPerson|Person)/[A-Za-z0-9\-.]{1,64}$`)

// Lockout: after maxFailures consecutive failed logins a user is locked out
// for lockoutFor, whatever the password.
const (
	maxFailures = 5
	lockoutFor  = 15 * time.Minute
)

// AddUser registers u in st.
func AddUser(ctx context.Context, st *store.Store, u User) error {
	if u.Username == "" || len(u.Username) > maxUsername || !utf8.ValidString(u.Username) ||
		strings.IndexFunc(u.Username, func(r rune) bool { return unicode.IsSpace(r) || unicode.IsControl(r) }) >= 0 {
		return fmt.Errorf("username is required: at most %d bytes of UTF-8 without spaces or control characters", maxUsername)
	}
	if len(u.Password) < 8 {
		return errors.New("password must be at least 8 characters")
	}
	if !scope.IsRole(u.Role) {
		return fmt.Errorf("role %q: want one of %s", u.Role, strings.Join(scope.Roles(), ", "))
	}
	if !fhirUserRE.MatchString(u.FHIRUser) {
		return fmt.Errorf("fhir user %q: want Practitioner/ID, Patient/ID, RelatedPerson/ID or Person/ID", u.FHIRUser)
	}
	if u.Role == "patient" && !strings.HasPrefix(u.FHIRUser, "Patient/") {
		return errors.New("a user with role patient must be a Patient")
	}
	err := authdb.New(st).AddUser(ctx, authdb.User{Username: u.Username, Role: u.Role, FHIRUser: u.FHIRUser}, hashPassword(u.Password))
	if errors.Is(err, authdb.ErrExists) {
		return fmt.Errorf("user %s already exists", u.Username)
	}
	if err != nil {
		return fmt.Errorf("add user %s: %w", u.Username, err)
	}
	return nil
}

// ListUsers returns every user (without passwords), by username.
func ListUsers(ctx context.Context, st *store.Store) ([]User, error) {
	rs, err := authdb.New(st).Users(ctx)
	if err != nil {
		return nil, fmt.Errorf("list users: %w", err)
	}
	var out []User
	for _, r := range rs {
		out = append(out, User{Username: r.Username, Role: r.Role, FHIRUser: r.FHIRUser})
	}
	return out, nil
}

// RemoveUser deletes a user.
func RemoveUser(ctx context.Context, st *store.Store, username string) error {
	if err := authdb.New(st).RemoveUser(ctx, username); err != nil {
		if errors.Is(err, ErrNotFound) {
			return fmt.Errorf("user %s: %w", username, err)
		}
		return fmt.Errorf("remove user %s: %w", username, err)
	}
	return nil
}

// getUser returns a user without the password (ErrNotFound when none).
func getUser(ctx context.Context, db *authdb.DB, username string) (*User, error) {
	r, err := db.User(ctx, username)
	if err != nil {
		return nil, fmt.Errorf("user %s: %w", username, err)
	}
	return &User{Username: r.Username, Role: r.Role, FHIRUser: r.FHIRUser}, nil
}

var errLogin = errors.New("unknown user, wrong password or account locked")

// login checks a user's password within the login limits (see credGuard):
// errLogin for a failure, a *oauthErr when a limit refused to check.
func (s *Server) login(r *http.Request, username, password string) (*User, error) {
	var u *User
	ok, err := s.creds.check(r, "user:"+username, true, func() (bool, error) {
		var err error
		u, err = authenticate(r.Context(), s.db, username, password)
		if errors.Is(err, errLogin) {
			return false, nil
		}
		return err == nil, err
	})
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, errLogin
	}
	return u, nil
}

// authenticate checks a password, counting failures and locking the account
// after maxFailures in a row. Every failure looks the same to the caller.
func authenticate(ctx context.Context, db *authdb.DB, username, password string) (*User, error) {
	if len(username) > maxUsername {
		return nil, errLogin // no user has such a name
	}
	c, err := db.Credentials(ctx, username)
	if errors.Is(err, authdb.ErrNotFound) {
		verifyPassword(dummyHash, password) // same work as for a real user
		return nil, errLogin
	}
	if err != nil {
		return nil, fmt.Errorf("login: %w", err)
	}
	ok := verifyPassword(c.PasswordHash, password)
	if c.LockedUntil != nil && time.Now().Before(*c.LockedUntil) {
		return nil, errLogin
	}
	if !ok {
		if err := db.RecordLoginFailure(ctx, username, maxFailures, lockoutFor); err != nil {
			return nil, fmt.Errorf("login: %w", err)
		}
		return nil, errLogin
	}
	if err := db.ResetLoginFailures(ctx, username); err != nil {
		return nil, fmt.Errorf("login: %w", err)
	}
	return &User{Username: c.Username, Role: c.Role, FHIRUser: c.FHIRUser}, nil
}

// argon2id parameters (OWASP's minimum: 19 MiB, 2 passes, 1 lane).
const (
	argonTime    = 2
	argonMemory  = 19 * 1024
	argonThreads = 1
	argonKeyLen  = 32
)

var dummyHash = hashPassword("not a real password")

// hashPassword returns the PHC-format argon2id hash of pw with a fresh salt.
func hashPassword(pw string) string {
	salt := make([]byte, 16)
	if _, err := rand.Read(salt); err != nil {
		panic(err) // crypto/rand never fails on supported platforms
	}
	key := argon2.IDKey([]byte(pw), salt, argonTime, argonMemory, argonThreads, argonKeyLen)
	return fmt.Sprintf("$argon2id$v=%d$m=%d,t=%d,p=%d$%s$%s", argon2.Version, argonMemory, argonTime, argonThreads,
		base64.RawStdEncoding.EncodeToString(salt), base64.RawStdEncoding.EncodeToString(key))
}

// verifyPassword compares pw with a hash from hashPassword in constant time.
func verifyPassword(hash, pw string) bool {
	parts := strings.Split(hash, "$")
	if len(parts) != 6 || parts[1] != "argon2id" {
		return false
	}
	var m, t uint32
	var p uint8
	if _, err := fmt.Sscanf(parts[3], "m=%d,t=%d,p=%d", &m, &t, &p); err != nil {
		return false
	}
	salt, err1 := base64.RawStdEncoding.DecodeString(parts[4])
	want, err2 := base64.RawStdEncoding.DecodeString(parts[5])
	if err1 != nil || err2 != nil || len(want) == 0 {
		return false
	}
	got := argon2.IDKey([]byte(pw), salt, t, m, p, uint32(len(want)))
	return subtle.ConstantTimeCompare(got, want) == 1
}
