package jobs

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/redis/go-redis/v9"
)

// A file that became a batch leaves its fingerprint in Redis,
// NS:fingerprint:FP -> batch id, for the store's retention: the same file
// sent again to the same CRM is recognised (import, run --redis and serve
// refuse it unless told it is meant), and `run` finds the unfinished batch
// to resume.

// Fingerprint is the fingerprint of an input for the CRM at apiURL: the
// hex SHA-256 of the URL and the content, so the same file for another CRM
// is another file. Give apiURL normalised (worker.NormalizeURL), so that
// spellings of one URL agree.
func Fingerprint(content io.Reader, apiURL string) (string, error) {
	h := sha256.New()
	fmt.Fprintf(h, "%d:%s\n", len(apiURL), apiURL)
	if _, err := io.Copy(h, content); err != nil {
		return "", fmt.Errorf("read the input: %w", err)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

func (s *Store) fingerprintKey(fp string) string { return s.ns + ":fingerprint:" + fp }

// RememberFile records that the file of fingerprint fp became batch id,
// for the store's retention; a later batch of the same file takes its
// place.
func (s *Store) RememberFile(ctx context.Context, fp, id string) error {
	if err := s.rdb.Set(ctx, s.fingerprintKey(fp), id, s.fingerprintTTL()).Err(); err != nil {
		return fmt.Errorf("remember the file of batch %s: %w", id, err)
	}
	return nil
}

// fingerprintTTL is the retention as a key's expiry; 0 keeps it.
func (s *Store) fingerprintTTL() time.Duration { return time.Duration(s.retention) * time.Second }

// FileBatch returns the batch the file of fingerprint fp became, if it is
// still known: false when the file was never imported, its record expired,
// its batch was deleted or expired, or its import was abandoned (nothing
// of it was sent). The record of a batch that is not finished is kept as
// long as the batch: each look renews it.
func (s *Store) FileBatch(ctx context.Context, fp string) (Batch, bool, error) {
	key := s.fingerprintKey(fp)
	id, err := s.rdb.Get(ctx, key).Result()
	if errors.Is(err, redis.Nil) {
		return Batch{}, false, nil
	}
	if err != nil {
		return Batch{}, false, fmt.Errorf("look up the file's earlier batches: %w", err)
	}
	b, err := s.Get(ctx, id)
	switch {
	case errors.Is(err, ErrNotFound), err == nil && (b.Status == BatchAbandoned || b.Status == "deleting"):
		return Batch{}, false, s.ForgetFile(ctx, fp, id)
	case err != nil:
		return Batch{}, false, err
	}
	if !Finished(b.Status) && s.retention > 0 {
		if err := s.rdb.Expire(ctx, key, s.fingerprintTTL()).Err(); err != nil {
			return Batch{}, false, fmt.Errorf("look up the file's earlier batches: %w", err)
		}
	}
	return b, true, nil
}

// ForgetFile removes the record of fingerprint fp if it still names batch
// id.
func (s *Store) ForgetFile(ctx context.Context, fp, id string) error {
	if err := forgetFileScript.Run(ctx, s.rdb, []string{s.fingerprintKey(fp)}, id).Err(); err != nil {
		return fmt.Errorf("forget the file of batch %s: %w", id, err)
	}
	return nil
}

var forgetFileScript = redis.NewScript(`
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
`)

// DuplicateError is a file sent again, to the same CRM, while the batch
// it became is still known (within the retention).
type DuplicateError struct {
	// Batch is the earlier batch of the file.
	Batch Batch
}

func (e *DuplicateError) Error() string {
	b := e.Batch
	when := "imported " + b.CreatedAt.Format(time.DateTime) + " UTC"
	if !b.FinishedAt.IsZero() {
		when += ", finished " + b.FinishedAt.Format(time.DateTime) + " UTC"
	}
	name := ""
	if b.Name != "" {
		name = fmt.Sprintf(" (%q)", b.Name)
	}
	return fmt.Sprintf("this file, for the same API URL, was imported already: batch %s%s, %s, %d of %d rows done (%d succeeded, %d failed, %d invalid), %s",
		b.ID, name, b.Status, b.Done(), b.Rows, b.Succeeded, b.Failed, b.Invalid, when)
}

// CheckFile returns a *DuplicateError when the file of fingerprint fp
// became a batch that is still known (see FileBatch). An upload or import
// calls it before queueing anything, unless the user said that sending
// the file again is meant, and calls RememberFile once it has a batch.
func (s *Store) CheckFile(ctx context.Context, fp string) error {
	b, ok, err := s.FileBatch(ctx, fp)
	if err != nil {
		return err
	}
	if ok {
		return &DuplicateError{Batch: b}
	}
	return nil
}
