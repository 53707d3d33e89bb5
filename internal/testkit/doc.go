// Package testkit holds support code that the tests of several packages
// share: loopback addresses that stay free until a test binds them, and
// whatever else more than one package's tests would otherwise write again.
// It also holds a throwaway test PKI and Eventually, the one bounded wait.
// It is imported only by tests and by the test rigs (testupstream,
// memupstream, bench).
package testkit
