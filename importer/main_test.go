package importer_test

import (
	"os"
	"testing"

	"github.com/bulkassign/bulkassign/internal/redistest"
)

// TestMain stops the throwaway redis-server that redistest.URL starts.
func TestMain(m *testing.M) { os.Exit(redistest.Main(m)) }
