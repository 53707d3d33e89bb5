package passhash

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"golang.org/x/crypto/argon2"
)

// Vectors from the reference implementation's test suite (libargon2
// src/test.c, argon2id v=19, password "password", salt "somesalt").
var knownVectors = []string{
	"$argon2id$v=19$m=256,t=2,p=1$c29tZXNhbHQ$nf65EOgLrQMR/uIPnA4rEsF5h7TKyQwu9U1bMCHGi/4",
	"$argon2id$v=19$m=65536,t=2,p=1$c29tZXNhbHQ$CTFhFdXPJO1aFaMaO6Mm5c8y7cJHAph8ArZWb2GRPPc",
}

func TestKnownVectors(t *testing.T) {
	for _, phc := range knownVectors {
		ok, err := Verify(phc, "password")
		if err != nil || !ok {
			t.Errorf("Verify(%s, password) = %v, %v; want true, nil", phc, ok, err)
		}
		ok, err = Verify(phc, "Password")
		if err != nil || ok {
			t.Errorf("Verify(%s, Password) = %v, %v; want false, nil", phc, ok, err)
		}
	}
}

func TestHashRoundTrip(t *testing.T) {
	for _, pw := range []string{"change-me", "ünïcödé pässwörd", strings.Repeat("x", 1000), " "} {
		phc, err := Hash(pw)
		if err != nil {
			t.Fatalf("Hash: %v", err)
		}
		want := fmt.Sprintf("$argon2id$v=19$m=%d,t=%d,p=%d$", memoryKiB, iterations, parallelism)
		if !strings.HasPrefix(phc, want) {
			t.Errorf("Hash = %q, want prefix %q", phc, want)
		}
		if err := Check(phc); err != nil {
			t.Errorf("Check(Hash(...)): %v", err)
		}
		if ok, err := Verify(phc, pw); err != nil || !ok {
			t.Errorf("Verify(right password) = %v, %v; want true, nil", ok, err)
		}
		if ok, err := Verify(phc, pw+"x"); err != nil || ok {
			t.Errorf("Verify(wrong password) = %v, %v; want false, nil", ok, err)
		}
	}
}

func TestHashSaltsDiffer(t *testing.T) {
	a, err := Hash("same")
	if err != nil {
		t.Fatal(err)
	}
	b, err := Hash("same")
	if err != nil {
		t.Fatal(err)
	}
	if a == b {
		t.Errorf("two hashes of the same password are equal: %q", a)
	}
}

func TestMalformed(t *testing.T) {
	const salt, key = "c29tZXNhbHQ", "nf65EOgLrQMR/uIPnA4rEsF5h7TKyQwu9U1bMCHGi/4"
	tests := []struct {
		name, phc, want string
	}{
		{"empty", "", "5 fields"},
		{"plain text", "change-me", "5 fields"},
		{"no leading dollar", "argon2id$v=19$m=256,t=2,p=1$" + salt + "$" + key + "$", "5 fields"},
		{"extra field", "$argon2id$v=19$m=256,t=2,p=1$x$" + salt + "$" + key, "5 fields"},
		{"bcrypt", "$2y$10$abcdefghijklmnopqrstuu5s2v8.iXieOjg/.AySBTTZIIVFJeBui", "5 fields"},
		{"argon2i", "$argon2i$v=19$m=256,t=2,p=1$" + salt + "$" + key, "algorithm"},
		{"argon2d", "$argon2d$v=19$m=256,t=2,p=1$" + salt + "$" + key, "algorithm"},
		{"old version", "$argon2id$v=16$m=256,t=2,p=1$" + salt + "$" + key, "version"},
		{"no version", "$argon2id$m=256,t=2,p=1$" + salt + "$" + key + "$x", "version"},
		{"params order", "$argon2id$v=19$t=2,m=256,p=1$" + salt + "$" + key, "m="},
		{"missing p", "$argon2id$v=19$m=256,t=2$" + salt + "$" + key, "m=...,t=...,p="},
		{"extra param", "$argon2id$v=19$m=256,t=2,p=1,keyid=x$" + salt + "$" + key, "m=...,t=...,p="},
		{"m not number", "$argon2id$v=19$m=lots,t=2,p=1$" + salt + "$" + key, "decimal"},
		{"m leading zero", "$argon2id$v=19$m=0256,t=2,p=1$" + salt + "$" + key, "decimal"},
		{"m plus sign", "$argon2id$v=19$m=+256,t=2,p=1$" + salt + "$" + key, "decimal"},
		{"m huge", "$argon2id$v=19$m=4194304,t=1,p=1$" + salt + "$" + key, "outside"},
		{"m overflow", "$argon2id$v=19$m=99999999999,t=1,p=1$" + salt + "$" + key, "decimal"},
		{"m zero", "$argon2id$v=19$m=0,t=2,p=1$" + salt + "$" + key, "outside"},
		{"m below 8p", "$argon2id$v=19$m=16,t=2,p=4$" + salt + "$" + key, "8 KiB per lane"},
		{"t zero", "$argon2id$v=19$m=256,t=0,p=1$" + salt + "$" + key, "outside"},
		{"t huge", "$argon2id$v=19$m=256,t=1000,p=1$" + salt + "$" + key, "outside"},
		{"p zero", "$argon2id$v=19$m=256,t=2,p=0$" + salt + "$" + key, "outside"},
		{"p huge", "$argon2id$v=19$m=4096,t=2,p=255$" + salt + "$" + key, "outside"},
		{"m*t too big", "$argon2id$v=19$m=262144,t=16,p=1$" + salt + "$" + key, "m*t"},
		{"padded salt", "$argon2id$v=19$m=256,t=2,p=1$c29tZXNhbHQ=$" + key, "salt"},
		{"salt not base64", "$argon2id$v=19$m=256,t=2,p=1$!!!!!!!!!!!$" + key, "salt"},
		{"salt too short", "$argon2id$v=19$m=256,t=2,p=1$c29tZQ$" + key, "salt"},
		{"salt non-canonical", "$argon2id$v=19$m=256,t=2,p=1$c29tZXNhbHR$" + key, "salt"},
		{"empty hash", "$argon2id$v=19$m=256,t=2,p=1$" + salt + "$", "hash"},
		{"hash too short", "$argon2id$v=19$m=256,t=2,p=1$" + salt + "$c29tZXNhbHQ", "hash"},
		{"salt with newline", "$argon2id$v=19$m=256,t=2,p=1$c29tZX\nNhbHQ$" + key, "salt"},
		{"hash url alphabet", "$argon2id$v=19$m=256,t=2,p=1$" + salt + "$nf65EOgLrQMR_uIPnA4rEsF5h7TKyQwu9U1bMCHGi_4", "hash"},
		{"too long", "$argon2id$v=19$m=256,t=2,p=1$" + salt + "$" + strings.Repeat("A", 300), "longer"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := Check(tt.phc)
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("Check = %v, want ErrMalformed", err)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Check = %q, want it to mention %q", err, tt.want)
			}
			if ok, verr := Verify(tt.phc, "password"); ok || verr == nil {
				t.Errorf("Verify = %v, %v; want false and an error", ok, verr)
			}
		})
	}
}

// TestErrorsNameNoInput guards the promise that messages never echo the hash.
func TestErrorsNameNoInput(t *testing.T) {
	const marker = "SECRETMARKER"
	for _, phc := range []string{
		marker,
		"$" + marker + "$v=19$m=256,t=2,p=1$c29tZXNhbHQ$x",
		"$argon2id$" + marker + "$m=256,t=2,p=1$c29tZXNhbHQ$x",
		"$argon2id$v=19$m=" + marker + ",t=2,p=1$c29tZXNhbHQ$x",
		"$argon2id$v=19$m=256,t=2,p=1$" + marker + "$x",
		"$argon2id$v=19$m=256,t=2,p=1$c29tZXNhbHQ$" + marker,
	} {
		if err := Check(phc); err == nil || strings.Contains(err.Error(), marker) {
			t.Errorf("Check(%q) = %v; want an error without the input", phc, err)
		}
	}
}

func FuzzParse(f *testing.F) {
	f.Add(knownVectors[0])
	f.Add("$argon2id$v=19$m=24576,t=2,p=1$AAAAAAAAAAAAAAAAAAAAAA$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA")
	f.Add("$argon2id$v=19$m=1,t=1,p=1$$")
	f.Add("$argon2i$v=19$m=65536,t=2,p=4$c29tZXNhbHQ$RdescudvJCsgt3ub+b+dWRWJTmaaJObG")
	f.Add("")
	f.Fuzz(func(t *testing.T, phc string) {
		p, err := parse(phc)
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("parse error %v does not wrap ErrMalformed", err)
			}
			return
		}
		if p.memory > maxMemoryKiB || p.time > maxIterations || p.threads > maxParallelism ||
			uint64(p.memory)*uint64(p.time) > maxMemoryPasses {
			t.Fatalf("parse accepted out-of-bounds cost m=%d t=%d p=%d", p.memory, p.time, p.threads)
		}
		// A string that parses re-encodes to itself (the format is canonical).
		if got := p.encode(); got != phc {
			t.Fatalf("encode(parse(%q)) = %q", phc, got)
		}
	})
}

// BenchmarkVerify measures one verification with the parameters of new
// hashes (the figure noted beside the constants) and a few alternatives.
func BenchmarkVerify(b *testing.B) {
	phc, err := Hash("change-me")
	if err != nil {
		b.Fatal(err)
	}
	b.Run("default", func(b *testing.B) {
		for b.Loop() {
			if ok, err := Verify(phc, "change-me"); !ok || err != nil {
				b.Fatal(ok, err)
			}
		}
	})
	salt := []byte("0123456789abcdef")
	for _, c := range []struct {
		m, t uint32
		p    uint8
	}{{19 * 1024, 2, 1}, {32 * 1024, 2, 1}, {64 * 1024, 1, 2}, {64 * 1024, 3, 4}} {
		b.Run(fmt.Sprintf("m=%d,t=%d,p=%d", c.m, c.t, c.p), func(b *testing.B) {
			for b.Loop() {
				argon2.IDKey([]byte("change-me"), salt, c.t, c.m, c.p, keyLen)
			}
		})
	}
}
