package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"text/tabwriter"
	"time"
)

// Targets of the issue (ratios from one run on a 2-core machine).
const (
	targetThroughputRatio = 0.9  // FETCH, RETR, SMTP: through >= 0.9 x direct
	targetAddedLoginMS    = 2.0  // p50 login latency through - direct
	targetLoginsPerSec    = 500  // with 32 clients, through
	targetRSSPerSessKiB   = 64.0 // per idle session in xoauthd
)

// result is one measured figure.
type result struct {
	Scenario string   `json:"scenario"`
	Metric   string   `json:"metric"`
	Unit     string   `json:"unit"`
	Direct   *float64 `json:"direct,omitempty"`
	Through  float64  `json:"through"`
	Ratio    *float64 `json:"ratio,omitempty"` // through / direct
	Target   string   `json:"target,omitempty"`
	Met      *bool    `json:"met,omitempty"`
	// CPU accounting of the measurement (omitted when too small to see).
	CPUDirect  *cpuShare `json:"cpu_direct,omitempty"`
	CPUThrough *cpuShare `json:"cpu_through,omitempty"`
	CPURatio   *float64  `json:"cpu_ratio,omitempty"` // direct CPU per unit / through CPU per unit
	Note       string    `json:"note,omitempty"`
}

// cpuShare is the CPU time per unit of work of each party: seconds per GB
// (Per "GB") or microseconds per operation.
type cpuShare struct {
	Per      string  `json:"per"`
	Upstream float64 `json:"upstream"`
	Xoauthd  float64 `json:"xoauthd"`
	Client   float64 `json:"client"` // the benchmark process
}

// total is the CPU of all parties per unit.
func (c cpuShare) total() float64 { return c.Upstream + c.Xoauthd + c.Client }

// compare is a direct-versus-through figure where more is better.
func compare(scenario, metric, unit string, direct, through float64, minRatio float64) result {
	r := result{Scenario: scenario, Metric: metric, Unit: unit, Direct: &direct, Through: through}
	if direct > 0 {
		ratio := through / direct
		r.Ratio = &ratio
	}
	if minRatio > 0 {
		r.Target = fmt.Sprintf(">= %.2gx direct", minRatio)
		met := r.Ratio != nil && *r.Ratio >= minRatio
		r.Met = &met
	}
	return r
}

// single is a figure measured through xoauthd only, with an optional
// target: at most (atMost) or at least the bound.
func single(scenario, metric, unit string, through float64, target string, met *bool) result {
	return result{Scenario: scenario, Metric: metric, Unit: unit, Through: through, Target: target, Met: met}
}

// atMost and atLeast build a target check.
func atMost(v, bound float64) *bool  { b := v <= bound; return &b }
func atLeast(v, bound float64) *bool { b := v >= bound; return &b }

// report is the whole output of a run.
type report struct {
	Machine  machine    `json:"machine"`
	Options  reportOpts `json:"options"`
	Results  []result   `json:"results"`
	Failures []failure  `json:"failures,omitempty"`
	Duration string     `json:"duration"`
}

// reportOpts are the options that shaped the figures.
type reportOpts struct {
	Quick    bool   `json:"quick"`
	Upstream string `json:"upstream"`
	Rounds   int    `json:"rounds"`
	Sizes    sizes  `json:"sizes"`
	Profile  string `json:"profile,omitempty"`
}

// failure is a scenario that failed outright.
type failure struct {
	Scenario string `json:"scenario"`
	Error    string `json:"error"`
}

// machine describes where the figures were taken.
type machine struct {
	CPUs     int    `json:"cpus"`
	MemMiB   int64  `json:"mem_mib"`
	Go       string `json:"go"`
	OS       string `json:"os"`
	Kernel   string `json:"kernel,omitempty"`
	Dovecot  string `json:"dovecot,omitempty"`
	FileLim  uint64 `json:"nofile"`
	Upstream string `json:"upstream"`
	// LoadStart and LoadEnd are the 1-minute load averages around the run:
	// other work on the machine distorts the figures.
	LoadStart float64 `json:"load_start"`
	LoadEnd   float64 `json:"load_end"`
}

// describeMachine gathers the machine facts.
func describeMachine(upstream string, nofile uint64) machine {
	m := machine{
		CPUs: runtime.NumCPU(), MemMiB: memTotalKiB() / 1024, Go: runtime.Version(),
		OS: runtime.GOOS + "/" + runtime.GOARCH, FileLim: nofile, Upstream: upstream,
		LoadStart: loadAverage(),
	}
	if out, err := exec.Command("uname", "-r").Output(); err == nil {
		m.Kernel = strings.TrimSpace(string(out))
	}
	if upstream == upstreamDovecot {
		for _, bin := range []string{"dovecot", "/usr/sbin/dovecot"} {
			if out, err := exec.Command(bin, "--version").Output(); err == nil {
				m.Dovecot = strings.TrimSpace(string(out))
				break
			}
		}
	}
	return m
}

// writeJSON writes the report as indented JSON.
func (r *report) writeJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(r)
}

// writeText writes the report as a table.
func (r *report) writeText(w io.Writer) error {
	m := r.Machine
	fmt.Fprintf(w, "machine: %d CPUs, %d MiB, %s, %s, kernel %s, RLIMIT_NOFILE %d\n", m.CPUs, m.MemMiB, m.Go, m.OS, m.Kernel, m.FileLim)
	if m.Dovecot != "" {
		fmt.Fprintf(w, "upstream: %s (Dovecot %s)\n", m.Upstream, m.Dovecot)
	} else {
		fmt.Fprintf(w, "upstream: %s\n", m.Upstream)
	}
	fmt.Fprintf(w, "rounds: %d (figures are medians over rounds), quick: %v, took %s, load average %.2f at start, %.2f at end\n",
		r.Options.Rounds, r.Options.Quick, r.Duration, m.LoadStart, m.LoadEnd)
	if r.Options.Quick {
		fmt.Fprintf(w, "quick mode: tiny counts to check that every scenario works; the figures and targets mean nothing\n")
	}
	fmt.Fprintf(w, "cpu ratio: CPU per unit direct / through, summed over upstream, xoauthd and the benchmark (the throughput ratio when all cores are busy)\n\n")
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "scenario\tmetric\tunit\tdirect\tthrough\tratio\tcpu ratio\ttarget\tmet\tnote")
	for _, res := range r.Results {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", res.Scenario, res.Metric, res.Unit,
			optFloat(res.Direct), fmtFloat(res.Through), optFloat(res.Ratio), optFloat(res.CPURatio), res.Target, metMark(res.Met), res.Note)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	for _, f := range r.Failures {
		fmt.Fprintf(w, "\nFAILED %s: %s\n", f.Scenario, f.Error)
	}
	if r.Options.Profile != "" {
		fmt.Fprintf(w, "\nprofiles: %s (go tool pprof %s)\n", r.Options.Profile, filepath.Join(r.Options.Profile, "cpu-fetch.pprof"))
	}
	return nil
}

func optFloat(p *float64) string {
	if p == nil {
		return "-"
	}
	return fmtFloat(*p)
}

// fmtFloat prints with about three significant digits.
func fmtFloat(v float64) string {
	switch a := max(v, -v); {
	case a >= 100:
		return fmt.Sprintf("%.0f", v)
	case a >= 10:
		return fmt.Sprintf("%.1f", v)
	default:
		return fmt.Sprintf("%.2f", v)
	}
}

func metMark(p *bool) string {
	switch {
	case p == nil:
		return ""
	case *p:
		return "yes"
	default:
		return "NO"
	}
}

// roundDuration prints a run's duration.
func roundDuration(d time.Duration) string { return d.Round(time.Millisecond).String() }
