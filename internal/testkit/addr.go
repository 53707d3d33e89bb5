package testkit

import (
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
)

// Ports below the kernel's ephemeral range: an outgoing connection (from
// this process or any other) is given a local port from that range, so a
// port picked here cannot be taken by one between the check and the bind.
// Ports asked for with ":0" come from that range too, which is why they
// are not used.
const (
	lowestPort   = 20000
	fallbackHigh = 32767 // Linux's default ephemeral range starts at 32768
)

// handedOut remembers the ports given out in this process, so that two
// calls never return the same one.
var handedOut = struct {
	sync.Mutex
	ports map[int]bool
}{ports: map[int]bool{}}

// FreeAddr returns "127.0.0.1:PORT" with a port that was free a moment ago
// and that this process has not handed out before. It fails t when none
// is found.
func FreeAddr(t testing.TB) string {
	t.Helper()
	ports, err := FreePorts(1)
	if err != nil {
		t.Fatal(err)
	}
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(ports[0]))
}

// FreePorts returns n distinct ports that were free on 127.0.0.1 a moment
// ago, below the ephemeral range and not handed out before by this process.
func FreePorts(n int) ([]int, error) {
	high := ephemeralLow() - 1
	if high <= lowestPort+n {
		high = fallbackHigh
	}
	handedOut.Lock()
	defer handedOut.Unlock()
	ports := make([]int, 0, n)
	for tries := 0; len(ports) < n; tries++ {
		if tries > 1000 {
			return nil, fmt.Errorf("no free loopback port found in %d-%d", lowestPort, high)
		}
		p := lowestPort + rand.IntN(high-lowestPort+1)
		if handedOut.ports[p] {
			continue
		}
		ln, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(p)))
		if err != nil {
			continue
		}
		ln.Close()
		handedOut.ports[p] = true
		ports = append(ports, p)
	}
	return ports, nil
}

// ephemeralLow is the first port of Linux's ephemeral range, or
// fallbackHigh+1 where it cannot be read.
func ephemeralLow() int {
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err != nil {
		return fallbackHigh + 1
	}
	f := strings.Fields(string(b))
	if len(f) == 0 {
		return fallbackHigh + 1
	}
	lo, err := strconv.Atoi(f[0])
	if err != nil || lo <= lowestPort {
		return fallbackHigh + 1
	}
	return lo
}
