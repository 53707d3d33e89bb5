package memupstream

// TB is the part of testing.TB that MustStart uses; it keeps the testing
// package out of binaries that import memupstream.
type TB interface {
	Helper()
	Fatalf(format string, args ...any)
	Cleanup(func())
}

// MustStart starts a Server for a test or benchmark, fails it when that is
// impossible and closes the server when it ends.
func MustStart(t TB, opts Options) *Server {
	t.Helper()
	s, err := Start(opts)
	if err != nil {
		t.Fatalf("%v", err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}
