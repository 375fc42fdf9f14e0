package redistest

import (
	"errors"
	"testing"

	"github.com/bulkassign/bulkassign/internal/redisproc"
)

// Options configures a Server started by Start. The zero value is a server
// without persistence; AppendOnly turns on the append-only file with an
// fsync per write, so every acknowledged write survives Stop, Kill and
// Restart.
type Options = redisproc.Options

// Server is a throwaway redis-server of its own, for tests that stop,
// kill or restart Redis.
type Server struct{ p *redisproc.Server }

// Start starts a redis-server for one test on a free port with its own
// temporary folder, and stops it when the test ends. It fails the test when
// redis-server cannot be started. Its URL names DB 9.
func Start(t testing.TB, opts Options) *Server {
	t.Helper()
	dir := t.TempDir() // registered first, so removed after Stop
	p, err := startProc(dir, opts)
	if err != nil {
		t.Fatalf("redistest: %v", err)
	}
	t.Cleanup(p.Stop)
	return &Server{p: p}
}

// startProc starts a redis-server, saying how to get one if it is missing.
func startProc(dir string, opts Options) (*redisproc.Server, error) {
	p, err := redisproc.Start(dir, opts)
	if errors.Is(err, redisproc.ErrNotInstalled) {
		return nil, errors.New("redis-server is not on PATH and " + EnvURL + " is not set; " + howToGetRedis)
	}
	return p, err
}

// URL is the redis:// URL of the server's DB 9.
func (s *Server) URL() string { return s.p.URL(sharedDB) }

// Addr is the server's host:port.
func (s *Server) Addr() string { return s.p.Addr() }

// Stop shuts the server down as an operator would (SIGTERM, then SIGKILL
// after 10 seconds) and waits for it to exit.
func (s *Server) Stop() { s.p.Stop() }

// Kill ends the server at once with SIGKILL, like a crash or an OOM kill.
// Writes not on disk are lost unless Options.AppendOnly is set.
func (s *Server) Kill() { s.p.Kill() }

// Restart stops the server if it runs and starts it again on the same
// port and folder. It fails the test when the server does not come back.
func (s *Server) Restart(t testing.TB) {
	t.Helper()
	if err := s.p.Restart(); err != nil {
		t.Fatalf("redistest: restart: %v", err)
	}
}
