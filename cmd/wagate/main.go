// Command wagate runs the WhatsApp HTTP gateway; see `wagate --help`.
package main

import (
	"context"
	"os"

	"github.com/wagate/wagate/internal/app"
)

func main() {
	os.Exit(app.Run(context.Background(), os.Args[1:], os.Getenv, os.Stdout, os.Stderr))
}
