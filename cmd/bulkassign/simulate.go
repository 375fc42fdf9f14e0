package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"strconv"
	"time"

	"github.com/bulkassign/bulkassign/simulator"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// simFlags are the simulator's settings, shared by `simulate` and
// `run --simulate` (there with a sim- prefix).
type simFlags struct {
	rate              float64
	burst             int
	latency           time.Duration
	transient         float64
	transientAttempts int
	hang              float64
	hangFor           time.Duration
	contacts, members string
}

// simulatorFlags adds the simulator's flags, named with prefix, to fs.
func simulatorFlags(fs *pflag.FlagSet, prefix string) *simFlags {
	s := &simFlags{}
	fs.Float64Var(&s.rate, prefix+"rate", 0, "simulator: requests per second before it answers 429 (0 = unlimited)")
	fs.IntVar(&s.burst, prefix+"burst", 1, "simulator: rate limit burst")
	fs.DurationVar(&s.latency, prefix+"latency", 0, "simulator: delay added to every answer")
	fs.Float64Var(&s.transient, prefix+"transient", 0, "simulator: fraction (0-1) of contact/member pairs whose first calls answer 5xx")
	fs.IntVar(&s.transientAttempts, prefix+"transient-attempts", 1, "simulator: how many calls of such a pair fail")
	fs.Float64Var(&s.hang, prefix+"hang", 0, "simulator: fraction (0-1) of pairs whose first call hangs")
	fs.DurationVar(&s.hangFor, prefix+"hang-for", 30*time.Second, "simulator: how long a hanging call hangs")
	fs.StringVar(&s.contacts, prefix+"contacts", "", "simulator: known contacts, a number to generate or a file (one id per line or CSV); empty accepts any id")
	fs.StringVar(&s.members, prefix+"members", "", "simulator: known team members, a number to generate or a JSON file; empty accepts any id")
	return s
}

// options builds the simulator's options; apiKey "" accepts any key.
func (s *simFlags) options(apiKey string) (simulator.Options, error) {
	o := simulator.Options{
		APIKey: apiKey, Rate: s.rate, Burst: s.burst, Latency: s.latency,
		Transient: s.transient, TransientAttempts: s.transientAttempts,
		Hang: s.hang, HangFor: s.hangFor,
	}
	var err error
	if o.Contacts, err = loadKnown(s.contacts, simulator.GenerateContacts, simulator.LoadContacts); err != nil {
		return o, fmt.Errorf("contacts: %w", err)
	}
	if o.Members, err = loadKnown(s.members, simulator.GenerateMembers, simulator.LoadMembers); err != nil {
		return o, fmt.Errorf("members: %w", err)
	}
	return o, nil
}

// loadKnown reads a known set given as a count or a file; "" means none.
func loadKnown[T any](v string, gen func(int) []T, load func(io.Reader) ([]T, error)) ([]T, error) {
	if v == "" {
		return nil, nil
	}
	if n, err := strconv.Atoi(v); err == nil {
		return gen(n), nil
	}
	f, err := os.Open(v)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return load(f)
}

// startInProcess starts the simulator for `--simulate` on a free loopback
// port and returns its URL; stop ends it.
func (s *simFlags) startInProcess(ctx context.Context, w io.Writer) (url string, stop func(), err error) {
	opts, err := s.options("")
	if err != nil {
		return "", nil, err
	}
	url, stopSim, err := simulator.Start(ctx, "127.0.0.1:0", simulator.New(opts))
	if err != nil {
		return "", nil, err
	}
	fmt.Fprintf(w, "simulator: the CRM simulator answers at %s\n", url)
	return url, func() { _ = stopSim(context.Background()) }, nil
}

func (a *app) simulateCommand() *cobra.Command {
	var (
		addr, key string
		sim       *simFlags
	)
	cmd := &cobra.Command{
		Use:   "simulate",
		Short: "run the built-in CRM simulator",
		Long: `Serves the CRM API (assign, team-members/all, contact info) with in-memory
state, for demos and tests. It accepts any well-formed id unless given known
contacts or members, and can rate-limit, add latency and inject
deterministic transient failures.`,
		Example: `  bulkassign simulate --members 20 --rate 50 --transient 0.05`,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			opts, err := sim.options(key)
			if err != nil {
				return err
			}
			url, stop, err := simulator.Start(ctx, addr, simulator.New(opts))
			if err != nil {
				return err
			}
			fmt.Fprintf(a.stdout, "CRM simulator listening on %s (Ctrl-C stops it)\n", url)
			<-ctx.Done()
			sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			return stop(sctx)
		},
	}
	flagGroup(cmd.Flags(), groupSimulator, func(fs *pflag.FlagSet) {
		fs.StringVar(&addr, "addr", "127.0.0.1:8080", "`ADDRESS` to listen on")
		fs.StringVar(&key, "api-key", "", "API `KEY` the simulator requires (BULKASSIGN_API_KEY); empty accepts any")
		sim = simulatorFlags(fs, "")
	})
	return cmd
}
