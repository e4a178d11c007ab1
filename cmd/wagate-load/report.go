package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"runtime"
	"slices"
	"strings"
	"text/tabwriter"
)

// latency percentiles in milliseconds.
type latency struct {
	Samples int     `json:"samples"`
	P50     float64 `json:"p50_ms"`
	P90     float64 `json:"p90_ms"`
	P99     float64 `json:"p99_ms"`
	Max     float64 `json:"max_ms"`
}

// result is one run.
type result struct {
	Mode string `json:"mode"`
	DB   string `json:"db"`
	Run  int    `json:"run"`

	WindowS    float64 `json:"window_s"`       // measured window: injection after the warm-up
	Throughput float64 `json:"throughput_eps"` // deliveries that arrived in the window, per second
	InjectRate float64 `json:"inject_eps"`     // messages accepted in the window, per second
	EndToEnd   float64 `json:"end_to_end_eps"` // deliveries of messages sent in the window / (last arrival - first send)
	// Durable is every delivery / (results stored - first inject): from the
	// first inbound event to the last result written back; 0 when the
	// outbox could not be read.
	Durable float64 `json:"durable_eps"`

	PerSecondMin    int `json:"per_second_min"`
	PerSecondMedian int `json:"per_second_median"`
	PerSecondMax    int `json:"per_second_max"`

	Latency latency `json:"latency"` // send of the inject request -> arrival at the receiver
	// StartedAt is when the measured window began (wall clock), and
	// MaxLatencyPerSecond the worst latency of each second of it, to line
	// stalls up with server logs.
	StartedAt           string    `json:"window_started_at"`
	MaxLatencyPerSecond []float64 `json:"max_latency_per_second_ms,omitempty"`
	InjectRequest       latency   `json:"inject_request"` // inject request duration (the server commits before answering)
	InjectLag           *latency  `json:"inject_lag,omitempty"`

	Injected             int    `json:"injected"`
	Accepted             int    `json:"accepted"`
	InjectFailed         int    `json:"inject_failed"`
	InjectRequests       int    `json:"inject_requests"`
	InjectRequestsFailed int    `json:"inject_requests_failed"`
	FirstInjectError     string `json:"first_inject_error,omitempty"`

	Expected   int   `json:"expected_deliveries"`
	Delivered  int   `json:"delivered"`
	Lost       int   `json:"lost"`
	Duplicates int64 `json:"duplicates"`
	Unexpected int64 `json:"unexpected"`

	SigChecked   int64  `json:"signatures_checked"`
	SigErrors    int64  `json:"signature_errors"`
	SigError     string `json:"signature_error,omitempty"`
	BadRequests  int64  `json:"bad_requests"`
	HangRequests int64  `json:"hang_requests"`

	DrainS         float64  `json:"drain_s"`                    // last arrival after the end of the injection
	ResultsStoredS *float64 `json:"results_stored_s,omitempty"` // outbox clear of measured rows, after the last arrival
	StoredNote     string   `json:"results_stored_note,omitempty"`

	// CPU used during the injection and drain, in cores (CPU seconds per
	// second): the spawned server's, and this process's (the load
	// generator and the receiver, plus the server in the in-process modes).
	CPUWallS  float64 `json:"cpu_wall_s"`
	CPUServer float64 `json:"cpu_server_cores,omitempty"`
	CPUSelf   float64 `json:"cpu_tool_cores"`
	// CPUOther is what other processes used meanwhile: above ~0.1 the run
	// shared the machine and should be repeated.
	CPUOther float64 `json:"cpu_other_cores"`

	PeakRSSMB *float64 `json:"peak_rss_mb"` // VmHWM
	RSSMB     *float64 `json:"rss_mb"`      // VmRSS at the end
	RSSScope  string   `json:"rss_scope"`
}

func (r *result) failed() bool {
	return r.Lost > 0 || r.Duplicates > 0 || r.Unexpected > 0 || r.SigErrors > 0 || r.InjectFailed > 0 || r.BadRequests > 0
}

// machine describes where the numbers came from.
type machine struct {
	CPUs     int    `json:"nproc"`
	CPUModel string `json:"cpu_model"`
	Memory   string `json:"mem_total"`
	Kernel   string `json:"kernel"`
	Go       string `json:"go"`
}

func machineInfo() machine {
	m := machine{CPUs: runtime.NumCPU(), Go: runtime.Version()}
	m.CPUModel = procField("/proc/cpuinfo", "model name")
	m.Memory = procField("/proc/meminfo", "MemTotal")
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		m.Kernel = strings.TrimSpace(string(b))
	}
	return m
}

func procField(path, name string) string {
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if k, v, ok := strings.Cut(sc.Text(), ":"); ok && strings.TrimSpace(k) == name {
			return strings.TrimSpace(v)
		}
	}
	return ""
}

// settings are the flags that shape the load.
type settings struct {
	Modes              []string `json:"modes"`
	DB                 string   `json:"db"`
	Sessions           int      `json:"sessions"`
	WebhooksPerSession int      `json:"webhooks_per_session"`
	Rate               float64  `json:"rate"`
	Duration           string   `json:"duration,omitempty"`
	Events             int      `json:"events,omitempty"`
	Warmup             string   `json:"warmup"`
	Concurrency        int      `json:"concurrency"`
	Batch              int      `json:"batch"`
	Tick               string   `json:"tick,omitempty"`
	ContentSize        int      `json:"content_size"`
	HangWebhooks       int      `json:"hang_webhooks"`
	Pending            int      `json:"pending"`
	ServerEnv          []string `json:"server_env,omitempty"`
	Repeat             int      `json:"repeat"`
	ToolProcs          int      `json:"tool_gomaxprocs"`
}

func settingsOf(o *options) settings {
	s := settings{Modes: o.modes, DB: o.db, Sessions: o.sessions, WebhooksPerSession: o.webhooksPerSession,
		Rate: o.rate, Events: o.events, Warmup: o.warmup.String(), Concurrency: o.concurrency, Batch: o.batch,
		ContentSize: o.contentSize, HangWebhooks: o.hangWebhooks, Pending: o.pending, ServerEnv: o.serverEnv, Repeat: o.repeat,
		ToolProcs: runtime.GOMAXPROCS(0)}
	if o.events == 0 {
		s.Duration = o.duration.String()
	}
	if o.rate > 0 {
		s.Tick = o.tick.String()
	}
	return s
}

// summary is the median of a mode's runs.
type summary struct {
	Mode       string  `json:"mode"`
	Runs       int     `json:"runs"`
	Throughput float64 `json:"throughput_eps"`
	Durable    float64 `json:"durable_eps"`
	P50        float64 `json:"p50_ms"`
	P90        float64 `json:"p90_ms"`
	P99        float64 `json:"p99_ms"`
	Max        float64 `json:"max_ms"`
	PeakRSSMB  float64 `json:"peak_rss_mb,omitempty"`
}

type report struct {
	Machine  machine   `json:"machine"`
	Settings settings  `json:"settings"`
	Runs     []*result `json:"runs"`
	Medians  []summary `json:"medians,omitempty"`
}

func (rep *report) failed() bool {
	return slices.ContainsFunc(rep.Runs, (*result).failed)
}

func median(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	s := slices.Clone(v)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// summarize computes each mode's medians when a mode ran more than once.
func (rep *report) summarize() {
	if rep.Settings.Repeat < 2 {
		return
	}
	for _, mode := range rep.Settings.Modes {
		var thr, dur, p50, p90, p99, mx, rss []float64
		for _, r := range rep.Runs {
			if r.Mode != mode {
				continue
			}
			dur = append(dur, r.Durable)
			thr, p50, p90, p99, mx = append(thr, r.Throughput), append(p50, r.Latency.P50), append(p90, r.Latency.P90),
				append(p99, r.Latency.P99), append(mx, r.Latency.Max)
			if r.PeakRSSMB != nil {
				rss = append(rss, *r.PeakRSSMB)
			}
		}
		if len(thr) == 0 {
			continue
		}
		rep.Medians = append(rep.Medians, summary{Mode: mode, Runs: len(thr), Throughput: median(thr), Durable: median(dur),
			P50: median(p50), P90: median(p90), P99: median(p99), Max: median(mx), PeakRSSMB: median(rss)})
	}
}

func (rep *report) writeJSON(w io.Writer) {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.Encode(rep)
}

func (rep *report) writeText(w io.Writer) {
	m := rep.Machine
	fmt.Fprintf(w, "machine: %d CPUs, %s, %s RAM, kernel %s, %s\n", m.CPUs, m.CPUModel, m.Memory, m.Kernel, m.Go)
	s := rep.Settings
	load := "as fast as possible"
	if s.Rate > 0 {
		load = fmt.Sprintf("%g events/s paced every %s", s.Rate, s.Tick)
	}
	amount := "for " + s.Duration + " after a " + s.Warmup + " warm-up"
	if s.Events > 0 {
		amount = fmt.Sprintf("%d events (first %s excluded)", s.Events, s.Warmup)
	}
	fmt.Fprintf(w, "load: %s, %s; %d sessions x %d webhooks; batch %d, concurrency %d, %d-byte texts",
		load, amount, s.Sessions, s.WebhooksPerSession, s.Batch, s.Concurrency, s.ContentSize)
	if s.HangWebhooks > 0 {
		fmt.Fprintf(w, "; %d hanging webhook(s)", s.HangWebhooks)
	}
	if s.Pending > 0 {
		fmt.Fprintf(w, "; %d events pending for a down receiver", s.Pending)
	}
	if len(s.ServerEnv) > 0 {
		fmt.Fprintf(w, "; server env %s", strings.Join(s.ServerEnv, " "))
	}
	fmt.Fprintf(w, "; load tool GOMAXPROCS %d", s.ToolProcs)
	fmt.Fprintln(w)
	for _, r := range rep.Runs {
		r.writeText(w)
	}
	if len(rep.Runs) > 1 {
		fmt.Fprintln(w)
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
		fmt.Fprintln(tw, "mode\tdb\trun\tevents/s\tdurable/s\tp50 ms\tp90 ms\tp99 ms\tmax ms\tlost\tdup\terrors\tpeak RSS MB\tother CPU\t")
		for _, r := range rep.Runs {
			fmt.Fprintf(tw, "%s\t%s\t%d\t%.0f\t%.0f\t%.2f\t%.2f\t%.2f\t%.2f\t%d\t%d\t%d\t%s\t%.2f\t\n", r.Mode, r.DB, r.Run, r.Throughput,
				r.Durable, r.Latency.P50, r.Latency.P90, r.Latency.P99, r.Latency.Max, r.Lost, r.Duplicates,
				int64(r.InjectRequestsFailed)+r.SigErrors+r.Unexpected+r.BadRequests, optMB(r.PeakRSSMB), r.CPUOther)
		}
		for _, sm := range rep.Medians {
			fmt.Fprintf(tw, "%s\tmedian\tof %d\t%.0f\t%.0f\t%.2f\t%.2f\t%.2f\t%.2f\t\t\t\t%s\t\t\n", sm.Mode, sm.Runs, sm.Throughput,
				sm.Durable, sm.P50, sm.P90, sm.P99, sm.Max, fmt.Sprintf("%.1f", sm.PeakRSSMB))
		}
		tw.Flush()
	}
}

func optMB(v *float64) string {
	if v == nil {
		return "n/a"
	}
	return fmt.Sprintf("%.1f", *v)
}

func (r *result) writeText(w io.Writer) {
	fmt.Fprintf(w, "\n== %s (db %s), run %d\n", r.Mode, r.DB, r.Run)
	fmt.Fprintf(w, "throughput:   %.0f deliveries/s over a %.2fs window (per second: min %d, median %d, max %d); injected %.0f/s; end to end %.0f/s\n",
		r.Throughput, r.WindowS, r.PerSecondMin, r.PerSecondMedian, r.PerSecondMax, r.InjectRate, r.EndToEnd)
	if r.Durable > 0 {
		fmt.Fprintf(w, "durable:      %.0f events/s from the first inject to the last result stored (%d deliveries, warm-up included)\n", r.Durable, r.Delivered)
	}
	fmt.Fprintf(w, "latency:      p50 %.2f ms, p90 %.2f ms, p99 %.2f ms, max %.2f ms (%d deliveries; inject request sent -> received)\n",
		r.Latency.P50, r.Latency.P90, r.Latency.P99, r.Latency.Max, r.Latency.Samples)
	fmt.Fprintf(w, "inject:       %d requests (%d failed), %d messages accepted, %d failed; request p50 %.2f ms, p99 %.2f ms, max %.2f ms\n",
		r.InjectRequests, r.InjectRequestsFailed, r.Accepted, r.InjectFailed, r.InjectRequest.P50, r.InjectRequest.P99, r.InjectRequest.Max)
	if r.InjectLag != nil {
		fmt.Fprintf(w, "pacing lag:   p99 %.2f ms, max %.2f ms (time a batch waited for a free injector)\n", r.InjectLag.P99, r.InjectLag.Max)
	}
	if r.FirstInjectError != "" {
		fmt.Fprintf(w, "inject error: %s\n", r.FirstInjectError)
	}
	fmt.Fprintf(w, "deliveries:   %d expected, %d delivered, %d lost, %d duplicates, %d unexpected, %d unparseable\n",
		r.Expected, r.Delivered, r.Lost, r.Duplicates, r.Unexpected, r.BadRequests)
	fmt.Fprintf(w, "signatures:   %d checked, %d bad", r.SigChecked, r.SigErrors)
	if r.SigError != "" {
		fmt.Fprintf(w, " (%s)", r.SigError)
	}
	fmt.Fprintln(w)
	stored := "n/a"
	if r.ResultsStoredS != nil {
		stored = fmt.Sprintf("%.2fs after the last delivery", *r.ResultsStoredS)
	}
	if r.StoredNote != "" {
		stored += " (" + r.StoredNote + ")"
	}
	fmt.Fprintf(w, "drain:        last delivery %.2fs after the injection ended; results stored %s\n", r.DrainS, stored)
	if r.HangRequests > 0 {
		fmt.Fprintf(w, "hanging:      %d requests held until the server gave up\n", r.HangRequests)
	}
	if r.CPUServer > 0 {
		fmt.Fprintf(w, "cpu:          server %.2f cores, load tool %.2f cores, other processes %.2f cores (over %.1fs of injection and drain)\n",
			r.CPUServer, r.CPUSelf, r.CPUOther, r.CPUWallS)
	} else {
		fmt.Fprintf(w, "cpu:          %.2f cores for this process (server, load tool and receiver), other processes %.2f cores (over %.1fs of injection and drain)\n",
			r.CPUSelf, r.CPUOther, r.CPUWallS)
	}
	fmt.Fprintf(w, "memory:       peak RSS %s MB, RSS at the end %s MB (%s)\n", optMB(r.PeakRSSMB), optMB(r.RSSMB), r.RSSScope)
}

func sortInts(v []int) { slices.Sort(v) }
