package diagnose

import "syscall"

// Windows reports socket failures with Winsock codes, which do not match
// the syscall.E* values of other platforms.
var (
	errnoRefused     = []error{syscall.ECONNREFUSED, syscall.Errno(10061)}                                            // WSAECONNREFUSED
	errnoReset       = []error{syscall.ECONNRESET, syscall.EPIPE, syscall.Errno(10054)}                               // WSAECONNRESET
	errnoUnreachable = []error{syscall.ENETUNREACH, syscall.EHOSTUNREACH, syscall.Errno(10051), syscall.Errno(10065)} // WSAENETUNREACH, WSAEHOSTUNREACH
)
