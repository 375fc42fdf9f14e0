package jobs_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/bulkassign/bulkassign/jobs"
)

func TestFingerprint(t *testing.T) {
	t.Parallel()
	fp := func(content, url string) string {
		t.Helper()
		s, err := jobs.Fingerprint(strings.NewReader(content), url)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	a := fp("aiContactId,teamMemberId\nc1,m1\n", "https://crm.example")
	if a != fp("aiContactId,teamMemberId\nc1,m1\n", "https://crm.example") {
		t.Error("the same file for the same CRM has two fingerprints")
	}
	if a == fp("aiContactId,teamMemberId\nc1,m2\n", "https://crm.example") {
		t.Error("two files have one fingerprint")
	}
	if a == fp("aiContactId,teamMemberId\nc1,m1\n", "https://other.example") {
		t.Error("one file for two CRMs has one fingerprint")
	}
	// The URL's length is part of what is hashed: a URL cannot borrow the
	// content's first bytes.
	if fp("xy", "https://a") == fp("y", "https://ax") {
		t.Error("the URL and the content run into each other")
	}
}

// TestFileBatch: a file remembered as a batch is refused again, with the
// batch named, while that batch is known; it is forgotten with the batch
// (deleted, or an import abandoned, which sent nothing).
func TestFileBatch(t *testing.T) {
	onTopologies(t, func(t *testing.T, b *bundle) {
		store := jobs.NewStore(b.rdb, jobs.StoreOptions{Namespace: b.ns, Retention: time.Hour, LeaseTTL: time.Millisecond})
		const fp = "0123abcd"
		if err := store.CheckFile(b.ctx, fp); err != nil {
			t.Fatalf("a file never imported: %v", err)
		}
		if err := store.Create(b.ctx, "b1", "Q4", "q4.csv"); err != nil {
			t.Fatal(err)
		}
		if err := store.RememberFile(b.ctx, fp, "b1"); err != nil {
			t.Fatal(err)
		}
		// The import's lease (1ms) runs out: nothing of it was sent, so the
		// file is not a duplicate and its record goes.
		waitStatus(t, b, store, "b1", jobs.BatchAbandoned)
		if err := store.CheckFile(b.ctx, fp); err != nil {
			t.Fatalf("the file of an abandoned import: %v", err)
		}
		if n, _ := b.rdb.Exists(b.ctx, b.ns+":fingerprint:"+fp).Result(); n != 0 {
			t.Error("the record of an abandoned import's file is still there")
		}

		running := jobs.NewStore(b.rdb, jobs.StoreOptions{Namespace: b.ns, Retention: time.Hour})
		if err := running.Create(b.ctx, "b2", "Q4", "q4.csv"); err != nil {
			t.Fatal(err)
		}
		if err := running.AddRows(b.ctx, "b2", validRows(3)); err != nil {
			t.Fatal(err)
		}
		if err := running.Start(b.ctx, "b2", 3, 3, nil); err != nil {
			t.Fatal(err)
		}
		if err := running.RememberFile(b.ctx, fp, "b2"); err != nil {
			t.Fatal(err)
		}
		ttl, err := b.rdb.TTL(b.ctx, b.ns+":fingerprint:"+fp).Result()
		if err != nil || ttl <= 0 || ttl > time.Hour {
			t.Errorf("the record's expiry is %v (%v), want the retention, 1h", ttl, err)
		}
		err = running.CheckFile(b.ctx, fp)
		var dup *jobs.DuplicateError
		if !errors.As(err, &dup) || dup.Batch.ID != "b2" || dup.Batch.Status != jobs.BatchRunning {
			t.Fatalf("the same file again: %v, want a *DuplicateError naming running batch b2", err)
		}
		for _, want := range []string{"batch b2", `"Q4"`, "running", "0 of 3 rows done", "imported "} {
			if !strings.Contains(err.Error(), want) {
				t.Errorf("message %q does not say %q", err, want)
			}
		}

		// Forgetting another batch's file leaves this one.
		if err := running.ForgetFile(b.ctx, fp, "b1"); err != nil {
			t.Fatal(err)
		}
		if bt, ok, err := running.FileBatch(b.ctx, fp); err != nil || !ok || bt.ID != "b2" {
			t.Fatalf("FileBatch = %s, %v, %v; want b2", bt.ID, ok, err)
		}
		if err := running.Delete(b.ctx, "b2"); err != nil {
			t.Fatal(err)
		}
		if _, ok, err := running.FileBatch(b.ctx, fp); err != nil || ok {
			t.Fatalf("the file of a deleted batch: known %v (%v)", ok, err)
		}
	})
}

// waitStatus waits until the batch shows status.
func waitStatus(t *testing.T, b *bundle, store *jobs.Store, id, status string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		bt, err := store.Get(b.ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		if bt.Status == status {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("batch %s is %s, not %s", id, bt.Status, status)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
