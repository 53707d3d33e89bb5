// Package passhash creates and verifies argon2id password hashes in the PHC
// string format ($argon2id$v=19$m=...,t=...,p=...$salt$hash), the format
// libargon2, argon2-cffi and most other implementations write, so a hash made
// by another tool verifies here as long as its parameters are within bounds.
//
// Only argon2id version 19 (0x13) is supported; argon2i, argon2d, secrets
// and associated data are not. Verify refuses parameters above fixed bounds
// so that a hostile or mistaken configuration cannot make one login cost
// seconds of CPU or gigabytes of memory.
package passhash
