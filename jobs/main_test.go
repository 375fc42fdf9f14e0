package jobs_test

import (
	"os"
	"testing"

	"github.com/bulkassign/bulkassign/internal/redistest"
)

func TestMain(m *testing.M) { os.Exit(redistest.Main(m)) }
