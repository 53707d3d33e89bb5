package testkit

import (
	"net"
	"strconv"
	"testing"
)

func TestFreePortsAreDistinctBindableAndBelowTheEphemeralRange(t *testing.T) {
	ports, err := FreePorts(50)
	if err != nil {
		t.Fatal(err)
	}
	more, err := FreePorts(50)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[int]bool{}
	for _, p := range append(ports, more...) {
		if seen[p] {
			t.Fatalf("port %d handed out twice", p)
		}
		seen[p] = true
		if p < lowestPort || p >= ephemeralLow() {
			t.Errorf("port %d is outside %d-%d", p, lowestPort, ephemeralLow()-1)
		}
	}
	ln, err := net.Listen("tcp", FreeAddr(t))
	if err != nil {
		t.Fatalf("binding a free address: %v", err)
	}
	ln.Close()
}

func TestFreePortsSkipsAPortInUse(t *testing.T) {
	// Hold every port FreePorts hands out once, then ask again: it must
	// not return a port that is bound.
	held := map[int]net.Listener{}
	defer func() {
		for _, ln := range held {
			ln.Close()
		}
	}()
	for range 20 {
		ports, err := FreePorts(1)
		if err != nil {
			t.Fatal(err)
		}
		ln, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(ports[0])))
		if err != nil {
			t.Fatalf("port %d was handed out but cannot be bound: %v", ports[0], err)
		}
		held[ports[0]] = ln
	}
}
