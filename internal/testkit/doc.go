// Package testkit holds support code that the tests of several packages
// share: loopback addresses that stay free until a test binds them, and
// whatever else more than one package's tests would otherwise write again.
// It is imported only by tests and by the test rigs (testupstream, bench).
package testkit
