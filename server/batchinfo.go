package server

import (
	"context"
	"fmt"
	"log/slog"
	"strconv"
	"time"

	"github.com/bulkassign/bulkassign/jobs"
	"github.com/redis/go-redis/v9"
)

// What serve knows of a batch beyond its record, kept next to it in Redis
// with an expiry past the batch's retention:
//
//	NS:serve:batch:<id>  hash: by (the token's name), mapping, preflight

func (s *Server) batchInfoKey(id string) string { return s.deps.Queue + ":serve:batch:" + id }

// uploadInfo is who uploaded a batch, and how.
type uploadInfo struct {
	By        string
	Mapping   string // the saved mapping's name, if one was used
	Preflight bool
}

// infoTTL is how long the upload info of a batch is kept: the batch's
// retention after it ends, plus time for the batch to run.
func (s *Server) infoTTL() time.Duration {
	if s.opts.Retention < 0 {
		return 0
	}
	return s.opts.Retention + 30*24*time.Hour
}

func (s *Server) recordUpload(ctx context.Context, id string, u uploadInfo) error {
	key := s.batchInfoKey(id)
	pipe := s.deps.Redis.TxPipeline()
	pipe.HSet(ctx, key, "by", u.By, "mapping", u.Mapping, "preflight", strconv.FormatBool(u.Preflight))
	if ttl := s.infoTTL(); ttl > 0 {
		pipe.Expire(ctx, key, ttl)
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return fmt.Errorf("record the upload of batch %s: %w", id, err)
	}
	return nil
}

// uploads reads the upload info of batches, one per id.
func (s *Server) uploads(ctx context.Context, ids []string) ([]uploadInfo, error) {
	out := make([]uploadInfo, len(ids))
	if len(ids) == 0 {
		return out, nil
	}
	pipe := s.deps.Redis.Pipeline()
	cmds := make([]*redis.MapStringStringCmd, len(ids))
	for i, id := range ids {
		cmds[i] = pipe.HGetAll(ctx, s.batchInfoKey(id))
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return nil, fmt.Errorf("read who uploaded the batches: %w", err)
	}
	for i, c := range cmds {
		m := c.Val()
		out[i] = uploadInfo{By: m["by"], Mapping: m["mapping"], Preflight: m["preflight"] == "true"}
	}
	return out, nil
}

// withUploads fills in who uploaded each batch.
func (s *Server) withUploads(ctx context.Context, bs []jobs.Batch) ([]Batch, error) {
	ids := make([]string, len(bs))
	for i, b := range bs {
		ids[i] = b.ID
	}
	infos, err := s.uploads(ctx, ids)
	if err != nil {
		return nil, err
	}
	now := s.opts.Now()
	out := make([]Batch, len(bs))
	for i, b := range bs {
		out[i] = view(b, now)
		out[i].UploadedBy, out[i].Mapping = infos[i].By, infos[i].Mapping
	}
	return out, nil
}

func slogBy(ctx context.Context) slog.Attr { return slog.String("by", principal(ctx)) }
func slogName(n string) slog.Attr          { return slog.String("name", n) }
