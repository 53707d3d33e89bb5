package e2e

import (
	"bufio"
	"fmt"
	"io"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestZZGuessTiming(t *testing.T) {
	r := newRigWith(t, rigOptions{})
	var mu sync.Mutex
	durs := map[string][]time.Duration{}
	var wg sync.WaitGroup
	start := time.Now()
	for w := range 100 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			src := sourceAddr(attackerNet, 100+w%20)
			for i := 0; i < 6; i++ {
				proto := []string{"imap", "pop3", "smtp"}[(w+i)%3]
				addr := map[string]string{"imap": r.imap, "pop3": r.pop3, "smtp": r.smtp}[proto]
				c, err := dialFrom(addr, src)
				if err != nil {
					t.Error(err)
					return
				}
				c.SetDeadline(time.Now().Add(60 * time.Second))
				br := bufio.NewReader(c)
				br.ReadString('\n')
				if proto == "smtp" {
					io.WriteString(c, "EHLO g\r\n")
					expectSMTP(br, "250")
				}
				for k := 0; k < 3; k++ {
					t0 := time.Now()
					reply, err := tryPassword(c, br, proto, fmt.Sprintf("g%d-%d", w, i), "x")
					d := time.Since(t0)
					if err != nil {
						break
					}
					key := proto + " " + strings.Fields(reply)[0] + " " + strings.Fields(reply)[1]
					mu.Lock()
					durs[key] = append(durs[key], d)
					mu.Unlock()
				}
				c.Close()
			}
		}()
	}
	wg.Wait()
	t.Logf("total %v", time.Since(start))
	for k, v := range durs {
		sort.Slice(v, func(i, j int) bool { return v[i] < v[j] })
		t.Logf("%s n=%d p50=%v p90=%v max=%v", k, len(v), v[len(v)/2], v[len(v)*9/10], v[len(v)-1])
	}
}
