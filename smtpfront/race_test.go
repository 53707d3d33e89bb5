//go:build race

package smtpfront

// largeMessageSize is the "25 MiB" message of the byte-for-byte test. The
// race detector slows go-smtp's byte-wise DATA readers and writers some
// forty times, so under -race the size is cut; without it the full 25 MiB
// runs.
const largeMessageSize = 2 << 20
