// Package passhash creates and verifies argon2id password hashes in the PHC
// string format ($argon2id$v=19$m=...,t=...,p=...$salt$hash).
package passhash
