package lattice

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"time"

	"github.com/latticehq/lattice/internal/config"
)

// shutdownGrace bounds how long in-flight requests may take to finish on shutdown.
const shutdownGrace = 30 * time.Second

// NewLogger builds the logger the config asks for, writing to w.
func NewLogger(c config.Log, w io.Writer) *slog.Logger {
	var level slog.Level
	if err := level.UnmarshalText([]byte(c.Level)); err != nil {
		level = slog.LevelInfo
	}
	opts := &slog.HandlerOptions{Level: level}
	if c.Format == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

// Run starts a server from cfg, tells the operator where it listens, serves until ctx is done
// (the command cancels it on SIGINT/SIGTERM) and then shuts down gracefully.
func Run(ctx context.Context, cfg *config.Config, logger *slog.Logger, out io.Writer) error {
	s, err := New(ctx, cfg, logger)
	if err != nil {
		return err
	}
	if err := s.Start(); err != nil {
		s.Shutdown(context.Background())
		return err
	}
	s.printBanner(out)
	<-ctx.Done()
	logger.Info("shutting down")
	sctx, cancel := context.WithTimeout(context.Background(), shutdownGrace)
	defer cancel()
	if err := s.Shutdown(sctx); err != nil {
		return fmt.Errorf("shut down: %w", err)
	}
	logger.Info("stopped")
	return nil
}

func (s *Server) printBanner(out io.Writer) {
	fmt.Fprintf(out, "\nLattice %s is serving %s\n", Version, s.cfg.ServerName)
	for _, l := range s.listeners {
		fmt.Fprintf(out, "  %-28s %v\n", l.URL(), l.cfg.Resources)
	}
	fmt.Fprintf(out, "  database: %s\n", s.db.Engine())
	create := "lattice create-account --config " + s.cfg.File + " --username NAME --admin"
	if s.cfg.File == "" {
		create = "lattice create-account --config FILE --username NAME --admin"
	}
	fmt.Fprintf(out, "\nCreate the first account (an admin) with:\n  %s\n", create)
	if s.cfg.OpenRegistration() {
		fmt.Fprintf(out, "or register with any Matrix client at %s: registration is open while every listener is on loopback.\n", s.URL(config.ResourceClient))
	}
	fmt.Fprintln(out)
}
