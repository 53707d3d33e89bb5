package passhash

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"golang.org/x/crypto/argon2"
)

// Parameters of new hashes. One verification costs about 27 ms on a 2-core
// AMD EPYC virtual machine ("BenchmarkVerify/default-2  27265312 ns/op", from
// go test -run '^$' -bench . ./internal/passhash). Alternatives measured the
// same way: m=19456,t=2,p=1 21 ms; m=32768,t=2,p=1 38 ms; m=65536,t=1,p=2
// 27 ms (but it takes both cores). One lane and 24 MiB keep a burst of
// concurrent logins affordable in memory and CPU.
const (
	memoryKiB   = 24 * 1024 // m: 24 MiB
	iterations  = 2         // t
	parallelism = 1         // p
	saltLen     = 16        // bytes
	keyLen      = 32        // bytes
)

// Bounds Verify and Check accept, for hashes written by other tools. The
// product bound caps the work of one verification at roughly a second.
const (
	maxMemoryKiB    = 256 * 1024 // 256 MiB
	maxIterations   = 16
	maxParallelism  = 16
	maxMemoryPasses = 1 << 20 // m*t in KiB, i.e. 1 GiB of memory passes
	minSaltLen      = 8
	maxSaltLen      = 64
	minKeyLen       = 16
	maxKeyLen       = 64
	maxPHCLen       = 256 // longest PHC string considered at all
	argonVersion    = argon2.Version
	algorithm       = "argon2id"
)

// ErrMalformed is wrapped by every error about a hash that is not a usable
// argon2id PHC string. Messages never include any part of the hash.
var ErrMalformed = errors.New("not a valid argon2id PHC string")

// params are the decoded parts of a PHC string.
type params struct {
	memory  uint32 // KiB
	time    uint32
	threads uint8
	salt    []byte
	key     []byte
}

// Hash returns an argon2id PHC string for password with a fresh random salt.
func Hash(password string) (string, error) {
	salt := make([]byte, saltLen)
	if _, err := rand.Read(salt); err != nil {
		return "", fmt.Errorf("reading random salt: %w", err)
	}
	p := params{memory: memoryKiB, time: iterations, threads: parallelism, salt: salt}
	p.key = argon2.IDKey([]byte(password), salt, p.time, p.memory, p.threads, keyLen)
	return p.encode(), nil
}

// Verify reports whether password matches the PHC string phc. It returns an
// error (wrapping ErrMalformed) when phc cannot be parsed or its parameters
// are out of bounds, and compares the derived key in constant time.
func Verify(phc, password string) (bool, error) {
	p, err := parse(phc)
	if err != nil {
		return false, err
	}
	got := argon2.IDKey([]byte(password), p.salt, p.time, p.memory, p.threads, uint32(len(p.key)))
	return subtle.ConstantTimeCompare(got, p.key) == 1, nil
}

// Check returns nil when phc is an argon2id PHC string that Verify accepts.
// It does not hash anything, so it is cheap enough for config validation.
func Check(phc string) error {
	_, err := parse(phc)
	return err
}

// encode writes p in PHC format with unpadded standard base64.
func (p params) encode() string {
	b64 := base64.RawStdEncoding
	return fmt.Sprintf("$%s$v=%d$m=%d,t=%d,p=%d$%s$%s", algorithm, argonVersion,
		p.memory, p.time, p.threads, b64.EncodeToString(p.salt), b64.EncodeToString(p.key))
}

// malformed wraps ErrMalformed with a reason that names no part of the input.
func malformed(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrMalformed, fmt.Sprintf(format, args...))
}

// parse decodes "$argon2id$v=19$m=M,t=T,p=P$SALT$HASH" strictly: fields in
// this order, no optional keyid/data, canonical unpadded base64.
func parse(phc string) (params, error) {
	var p params
	if len(phc) > maxPHCLen {
		return p, malformed("longer than %d characters", maxPHCLen)
	}
	fields := strings.Split(phc, "$")
	if len(fields) != 6 || fields[0] != "" {
		return p, malformed("want 5 fields separated by '$', like $argon2id$v=19$m=...,t=...,p=...$salt$hash")
	}
	if fields[1] != algorithm {
		return p, malformed("the algorithm is not argon2id")
	}
	if fields[2] != "v="+strconv.Itoa(argonVersion) {
		return p, malformed("the version is not v=%d", argonVersion)
	}
	if err := p.parseCost(fields[3]); err != nil {
		return p, err
	}
	var err error
	if p.salt, err = decodeB64(fields[4], "salt", minSaltLen, maxSaltLen); err != nil {
		return p, err
	}
	if p.key, err = decodeB64(fields[5], "hash", minKeyLen, maxKeyLen); err != nil {
		return p, err
	}
	return p, nil
}

// parseCost decodes "m=M,t=T,p=P" and checks each against its bound.
func (p *params) parseCost(s string) error {
	parts := strings.Split(s, ",")
	if len(parts) != 3 {
		return malformed("want parameters m=...,t=...,p=...")
	}
	m, err := costValue(parts[0], "m", 1, maxMemoryKiB)
	if err != nil {
		return err
	}
	t, err := costValue(parts[1], "t", 1, maxIterations)
	if err != nil {
		return err
	}
	threads, err := costValue(parts[2], "p", 1, maxParallelism)
	if err != nil {
		return err
	}
	if m < 8*threads {
		return malformed("memory m must be at least 8 KiB per lane (8*p)")
	}
	if uint64(m)*uint64(t) > maxMemoryPasses {
		return malformed("cost m*t is above %d; hash the password again with xoauthd hash-password", maxMemoryPasses)
	}
	p.memory, p.time, p.threads = m, t, uint8(threads)
	return nil
}

// costValue parses "name=N" with min <= N <= max, in canonical decimal.
func costValue(s, name string, min, max uint32) (uint32, error) {
	v, ok := strings.CutPrefix(s, name+"=")
	if !ok {
		return 0, malformed("want parameter %s=", name)
	}
	n, err := strconv.ParseUint(v, 10, 32)
	if err != nil || strconv.FormatUint(n, 10) != v {
		return 0, malformed("parameter %s is not a decimal number", name)
	}
	if n < uint64(min) || n > uint64(max) {
		return 0, malformed("parameter %s is outside %d..%d", name, min, max)
	}
	return uint32(n), nil
}

// decodeB64 decodes canonical unpadded standard base64 of min..max bytes.
func decodeB64(s, what string, min, max int) ([]byte, error) {
	// The decoder skips CR and LF; comparing the re-encoding rejects them too.
	b, err := base64.RawStdEncoding.Strict().DecodeString(s)
	if err != nil || base64.RawStdEncoding.EncodeToString(b) != s {
		return nil, malformed("the %s is not unpadded base64", what)
	}
	if len(b) < min || len(b) > max {
		return nil, malformed("the %s must be %d to %d bytes", what, min, max)
	}
	return b, nil
}
