//go:build !race

package smtpfront

// largeMessageSize is the 25 MiB message of the byte-for-byte test (see
// race_test.go for the size under -race).
const largeMessageSize = 25 << 20
