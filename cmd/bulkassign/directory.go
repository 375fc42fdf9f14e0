package main

import (
	"context"
	"errors"
	"fmt"
	"os"

	"github.com/bulkassign/bulkassign/config"
	"github.com/bulkassign/bulkassign/importer"
	"github.com/bulkassign/bulkassign/worker"
	"github.com/spf13/pflag"
)

// memberFlags are the flags of commands that import a file and may need the
// CRM's team member list: --preflight and --map.
type memberFlags struct {
	preflight bool
	mapFile   string
}

// registerMemberFlags adds --preflight and --map to fs.
func registerMemberFlags(fs *pflag.FlagSet) *memberFlags {
	m := &memberFlags{}
	fs.BoolVar(&m.preflight, "preflight", false, "check every teamMemberId against the CRM's team member list first: unknown or inactive members make their rows invalid before any call")
	fs.StringVar(&m.mapFile, "map", "", "column mapping, a YAML `FILE` of our field: their header (aiContactId: \"Contact Ref\", teamMemberEmail: \"Owner E-mail\", ...)")
	return m
}

// options adds the mapping, the preflight and the member list to opts.
// keyless says that the CRM takes calls without a key (the simulator).
func (m *memberFlags) options(opts importer.Options, cfg config.Config, keyless bool) (importer.Options, error) {
	if m.mapFile != "" {
		f, err := os.Open(m.mapFile)
		if err != nil {
			return opts, fmt.Errorf("--map: %w", err)
		}
		defer f.Close()
		if opts.Mapping, err = importer.LoadMapping(f, m.mapFile); err != nil {
			return opts, err
		}
		opts.MappingName = m.mapFile
	}
	if m.preflight && cfg.APIKey == "" && !keyless {
		return opts, errors.New("--preflight checks members against the CRM's team member list: set BULKASSIGN_API_KEY (or --api-key) and --api-url")
	}
	opts.Preflight = m.preflight
	opts.Directory = memberDirectory(cfg, keyless)
	return opts, nil
}

// memberDirectory returns the importer's Directory: the CRM's team
// members, fetched with cfg's API settings when the importer asks.
func memberDirectory(cfg config.Config, keyless bool) func(context.Context) ([]importer.Member, error) {
	return func(ctx context.Context) ([]importer.Member, error) {
		if cfg.APIKey == "" && !keyless {
			return nil, errors.New("no API key: set BULKASSIGN_API_KEY (or --api-key) and --api-url to fetch it")
		}
		client, err := worker.NewClient(cfg.ClientOptions())
		if err != nil {
			return nil, err
		}
		ms, err := client.TeamMembers(ctx)
		if err != nil {
			return nil, err
		}
		out := make([]importer.Member, len(ms))
		for i, m := range ms {
			out[i] = importer.Member{ID: m.ID, Email: m.Email, Name: m.Name, Active: m.Active}
		}
		return out, nil
	}
}
