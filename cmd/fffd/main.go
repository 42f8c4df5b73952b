// Command fffd is the fff server: `fffd mgmtd|meta|storage|local`, where
// `local` runs every role in one process over an embedded KV (what `fff up`
// starts).
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"

	"fff/internal/buildinfo"
)

func main() {
	closeInherited()
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	err := newRootCmd().ExecuteContext(ctx)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "fffd:", err)
		if errors.Is(err, errUsage) {
			os.Exit(2)
		}
		os.Exit(1)
	}
}

var errUsage = errors.New("usage")

type rootFlags struct {
	config   string
	data     string
	listen   string
	logLevel string
	logFmt   string
	metrics  string
}

func newRootCmd() *cobra.Command {
	var f rootFlags
	root := &cobra.Command{
		Use:           "fffd",
		Short:         "The fff server",
		Version:       buildinfo.Version(),
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	pf := root.PersistentFlags()
	pf.StringVar(&f.config, "config", "", "TOML config file (see docs/operations.md)")
	pf.StringVar(&f.data, "data", "", "data directory (overrides node.data_dir)")
	pf.StringVar(&f.listen, "listen", "", "listen address host:port (overrides node.listen; port 0 picks a free one)")
	pf.StringVar(&f.logLevel, "log-level", "", "debug, info, warn or error (overrides log.level)")
	pf.StringVar(&f.logFmt, "log-format", "", "auto, console or json (overrides log.format)")
	pf.StringVar(&f.metrics, "metrics-listen", "", "serve Prometheus metrics on host:port (overrides metrics.listen; port 0 picks a free one, recorded in DATA/fffd.json; \"off\": none)")
	root.SetVersionTemplate(buildinfo.String("fffd") + "\n")
	root.AddCommand(
		newVersionCmd(),
		newCheckCmd(),
		roleCmd("local", "Run every role in one process over the embedded KV (what `fff up` starts)", &f, runLocal),
		roleCmd("mgmtd", "Run the cluster manager", &f, runMgmtd),
		roleCmd("meta", "Run the metadata service", &f, runMeta),
		roleCmd("storage", "Run a storage server over storage.targets", &f, runStorage),
	)
	return root
}

func roleCmd(name, short string, f *rootFlags, run func(context.Context, Config) error) *cobra.Command {
	return &cobra.Command{
		Use:   name,
		Short: short,
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := loadConfig(f.config)
			if err != nil {
				return err
			}
			if f.data != "" {
				cfg.Node.DataDir = f.data
			}
			if f.listen != "" {
				cfg.Node.Listen = f.listen
			}
			if f.logLevel != "" {
				cfg.Log.Level = f.logLevel
			}
			if f.logFmt != "" {
				cfg.Log.Format = f.logFmt
			}
			if f.metrics != "" {
				cfg.Metrics.Listen = f.metrics
			}
			if err := cfg.validate(); err != nil {
				return fmt.Errorf("%w: %v", errUsage, err)
			}
			return run(cmd.Context(), cfg)
		},
	}
}
