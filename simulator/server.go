package simulator

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"sync"
	"time"
)

// Start listens on addr (for example "127.0.0.1:0") and serves s until stop
// is called. ctx bounds the listen only. It returns the base URL, such as
// http://127.0.0.1:PORT (an unspecified listen host is reported as
// 127.0.0.1).
//
// stop shuts the server down gracefully within its ctx: requests waiting on
// latency or a hang are aborted at once, the others finish; if ctx ends
// first the remaining connections are closed. stop may be called more than
// once.
func Start(ctx context.Context, addr string, s *Simulator) (url string, stop func(context.Context) error, err error) {
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", addr)
	if err != nil {
		return "", nil, fmt.Errorf("simulator: listen %s: %w", addr, err)
	}
	base, cancel := context.WithCancel(context.Background())
	srv := &http.Server{
		Handler:           s,
		ReadHeaderTimeout: 10 * time.Second,
		BaseContext:       func(net.Listener) context.Context { return base },
	}
	srv.RegisterOnShutdown(cancel)
	served := make(chan error, 1)
	go func() {
		err := srv.Serve(ln)
		if errors.Is(err, http.ErrServerClosed) {
			err = nil
		}
		served <- err
	}()

	var (
		once    sync.Once
		stopErr error
	)
	stop = func(ctx context.Context) error {
		once.Do(func() {
			err := srv.Shutdown(ctx)
			if err != nil {
				_ = srv.Close()
			}
			cancel()
			stopErr = errors.Join(err, <-served)
			if stopErr != nil {
				stopErr = fmt.Errorf("simulator: stop: %w", stopErr)
			}
		})
		return stopErr
	}
	return baseURL(ln.Addr()), stop, nil
}

func baseURL(a net.Addr) string {
	ta, ok := a.(*net.TCPAddr)
	if !ok {
		return "http://" + a.String()
	}
	host := "127.0.0.1"
	if !ta.IP.IsUnspecified() {
		host = ta.IP.String()
	}
	return "http://" + net.JoinHostPort(host, strconv.Itoa(ta.Port))
}
