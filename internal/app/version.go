package app

import (
	"fmt"
	"runtime/debug"
)

// Set by -ldflags "-X github.com/wagate/wagate/internal/app.version=... " at build time.
var (
	version = ""
	commit  = ""
	date    = ""
)

// BuildInfo is the version, commit and build date of this binary. Without
// ldflags it falls back to what the Go toolchain recorded (VCS stamping).
func BuildInfo() (ver, rev, built string) {
	ver, rev, built = version, commit, date
	if bi, ok := debug.ReadBuildInfo(); ok {
		if ver == "" && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
			ver = bi.Main.Version
		}
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				if rev == "" {
					rev = s.Value
				}
			case "vcs.time":
				if built == "" {
					built = s.Value
				}
			}
		}
	}
	if ver == "" {
		ver = "dev"
	}
	if rev == "" {
		rev = "unknown"
	}
	if built == "" {
		built = "unknown"
	}
	return ver, rev, built
}

// Version is the short version string used in the User-Agent.
func Version() string {
	v, _, _ := BuildInfo()
	return v
}

func versionLine() string {
	v, c, d := BuildInfo()
	return fmt.Sprintf("wagate %s (commit %s, built %s)", v, c, d)
}
