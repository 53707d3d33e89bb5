// Package testsignin signs identities in for tests, test rigs and
// benchmarks the way "xoauthd login" does, with a test identity provider
// (internal/testidp) playing the user's browser. It is a package of its own
// because testidp must not import tokens, whose tests use testidp.
package testsignin
