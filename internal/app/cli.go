package app

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strconv"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/wagate/wagate/internal/config"
)

const usage = `wagate: a self-hosted, multi-tenant WhatsApp HTTP gateway.

Usage:
  wagate [serve]                         run the gateway (the default)
  wagate migrate                         apply database migrations and exit
  wagate client create --name NAME       create a client; prints its id and token once
  wagate client list                     list clients
  wagate client rotate-token [--revoke-others] ID
                                         issue a new token for a client
  wagate version                         print version, commit and build date

Configuration comes from the environment and an optional .env file in the
working directory; see docs/configuration.md. Each command takes --help.
`

// Run is the whole CLI. It returns the process exit code.
func Run(ctx context.Context, args []string, getenv config.Getenv, stdout, stderr io.Writer) int {
	cmd := "serve"
	if len(args) > 0 {
		cmd, args = args[0], args[1:]
	}
	var err error
	switch cmd {
	case "serve":
		err = runServe(ctx, args, getenv, stdout, stderr)
	case "migrate":
		err = runMigrate(ctx, args, getenv, stderr)
	case "client", "clients":
		err = runClient(ctx, args, getenv, stdout, stderr)
	case "version", "--version", "-v":
		fmt.Fprintln(stdout, versionLine())
	case "help", "--help", "-h":
		fmt.Fprint(stdout, usage)
	default:
		fmt.Fprintf(stderr, "wagate: unknown command %q\n\n%s", cmd, usage)
		return 2
	}
	switch {
	case err == nil:
		return 0
	case errors.Is(err, flag.ErrHelp):
		return 0
	case errors.Is(err, errUsage):
		return 2
	default:
		fmt.Fprintf(stderr, "wagate: %v\n", err)
		return 1
	}
}

var errUsage = errors.New("usage")

func newFlags(name, help string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage: %s\n", help)
		fs.PrintDefaults()
	}
	return fs
}

func parse(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return errUsage
	}
	return nil
}

// load reads the configuration and builds a Main with its logger.
func load(getenv config.Getenv, logOut io.Writer) (*Main, error) {
	cfg, err := config.Load(getenv, ".env")
	if err != nil {
		return nil, fmt.Errorf("configuration: %w", err)
	}
	return &Main{Config: cfg, Log: NewLogger(cfg, logOut)}, nil
}

func runServe(ctx context.Context, args []string, getenv config.Getenv, stdout, stderr io.Writer) error {
	fs := newFlags("serve", "wagate serve\n\nRuns the gateway until SIGINT or SIGTERM, then shuts down gracefully.", stderr)
	if err := parse(fs, args); err != nil {
		return err
	}
	m, err := load(getenv, stderr)
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := m.Start(ctx); err != nil {
		m.Close(context.Background())
		return err
	}
	werr := m.Wait(ctx)
	m.Log.Info("shutting down", "grace", m.Config.ShutdownGrace.String())
	cerr := m.Close(context.Background())
	return errors.Join(werr, cerr)
}

func runMigrate(ctx context.Context, args []string, getenv config.Getenv, stderr io.Writer) error {
	fs := newFlags("migrate", "wagate migrate\n\nApplies the embedded migrations to the configured database and exits.", stderr)
	if err := parse(fs, args); err != nil {
		return err
	}
	m, err := load(getenv, stderr)
	if err != nil {
		return err
	}
	defer m.Close(ctx)
	if err := m.Open(ctx); err != nil {
		return err
	}
	v, err := m.DB.Version(ctx)
	if err != nil {
		return err
	}
	fmt.Fprintf(stderr, "database (%s) is at schema version %d\n", m.DB.Dialect(), v)
	return nil
}

func runClient(ctx context.Context, args []string, getenv config.Getenv, stdout, stderr io.Writer) error {
	const help = "wagate client create --name NAME | list | rotate-token [--revoke-others] ID"
	if len(args) == 0 || args[0] == "--help" || args[0] == "-h" || args[0] == "help" {
		fmt.Fprintf(stderr, "Usage: %s\n", help)
		if len(args) == 0 {
			return errUsage
		}
		return flag.ErrHelp
	}
	sub, args := args[0], args[1:]
	var run func(m *Main) error
	switch sub {
	case "create":
		fs := newFlags("client create", "wagate client create --name NAME\n\nCreates a client and prints its id and token. The token is shown only once.", stderr)
		name := fs.String("name", "", "the client's name (required)")
		if err := parse(fs, args); err != nil {
			return err
		}
		if *name == "" || fs.NArg() > 0 {
			fs.Usage()
			return errUsage
		}
		run = func(m *Main) error {
			c, tok, err := m.Clients.Create(ctx, *name)
			if err != nil {
				return err
			}
			fmt.Fprintf(stdout, "id:    %d\nname:  %s\ntoken: %s\n", c.ID, c.Name, tok)
			fmt.Fprintln(stderr, "Store the token now: it is not shown again.")
			return nil
		}
	case "list":
		fs := newFlags("client list", "wagate client list\n\nLists clients.", stderr)
		if err := parse(fs, args); err != nil {
			return err
		}
		run = func(m *Main) error {
			list, err := m.Clients.List(ctx)
			if err != nil {
				return err
			}
			tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "ID\tNAME\tACTIVE TOKENS\tCREATED")
			for _, c := range list {
				fmt.Fprintf(tw, "%d\t%s\t%d\t%s\n", c.ID, c.Name, c.ActiveTokens, c.CreatedAt.Format(time.RFC3339))
			}
			return tw.Flush()
		}
	case "rotate-token":
		fs := newFlags("client rotate-token", "wagate client rotate-token [--revoke-others] ID\n\nIssues a new token for client ID and prints it once.", stderr)
		revoke := fs.Bool("revoke-others", false, "revoke every earlier token of the client")
		if err := parse(fs, args); err != nil {
			return err
		}
		if fs.NArg() != 1 {
			fs.Usage()
			return errUsage
		}
		id, err := strconv.ParseInt(fs.Arg(0), 10, 64)
		if err != nil || id < 1 {
			return fmt.Errorf("client id must be a positive integer, got %q", fs.Arg(0))
		}
		run = func(m *Main) error {
			tok, err := m.Clients.RotateToken(ctx, id, *revoke)
			if err != nil {
				return err
			}
			fmt.Fprintf(stdout, "id:    %d\ntoken: %s\n", id, tok)
			return nil
		}
	default:
		fmt.Fprintf(stderr, "wagate client: unknown subcommand %q\nUsage: %s\n", sub, help)
		return errUsage
	}
	m, err := load(getenv, stderr)
	if err != nil {
		return err
	}
	defer m.Close(ctx)
	if err := m.Open(ctx); err != nil {
		return err
	}
	return run(m)
}
