// Package testredis runs a real redis-server (Debian's package) for tests:
// one process per test on a free loopback port, with its data in a
// temporary directory, so no system Redis is needed or touched. A test can
// stop the server (as if it crashed or was taken down), start it again on
// the same port with its data, or start it empty, as a Redis without
// persistence comes back after a restart.
//
// When redis-server is not installed the test is skipped with a loud
// message, except in CI (CI=true), where that is a failure.
package testredis
