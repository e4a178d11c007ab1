// Command wagate runs the WhatsApp HTTP gateway; see `wagate --help`.
package main

import (
	"context"
	"os"
	"runtime/debug"

	"github.com/wagate/wagate/internal/app"
)

// gcPercent is wagate's default GOGC. wagate allocates fast over a small
// live heap, so at Go's default of 100 the collector runs many times a
// second under load; 150 gave about 15% more throughput for about 3 MB more
// peak RSS (docs/benchmarks.md). GOGC in the environment wins.
const gcPercent = 150

func main() {
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(gcPercent)
	}
	os.Exit(app.Run(context.Background(), os.Args[1:], os.Getenv, os.Stdout, os.Stderr))
}
