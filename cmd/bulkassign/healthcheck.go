package main

import (
	"bufio"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/spf13/cobra"
)

// healthcheckTimeout bounds the whole request of `bulkassign healthcheck`.
const healthcheckTimeout = 5 * time.Second

func (a *app) healthcheckCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "healthcheck URL",
		Short: "GET a health URL, such as a worker's /readyz; exit 0 on 2xx, 1 otherwise",
		Long: `GETs URL and exits 0 when it answers 2xx, 1 otherwise (no answer within
5s, or another status), printing the first line of the answer. The image
has no shell, curl or wget: this is how its container health check asks a
worker started with --metrics-addr whether it is ready.`,
		Example: `  bulkassign healthcheck http://127.0.0.1:9090/readyz`,
		Args: func(_ *cobra.Command, args []string) error {
			if len(args) != 1 {
				return fmt.Errorf("healthcheck: want one URL argument, got %d", len(args))
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			req, err := http.NewRequestWithContext(cmd.Context(), http.MethodGet, args[0], nil)
			if err != nil {
				return fmt.Errorf("healthcheck: %w", err)
			}
			c := &http.Client{Timeout: healthcheckTimeout}
			res, err := c.Do(req)
			if err != nil {
				return fmt.Errorf("healthcheck: %w", err)
			}
			defer res.Body.Close()
			line, _ := bufio.NewReader(io.LimitReader(res.Body, 1024)).ReadString('\n')
			line = strings.TrimSpace(line)
			if res.StatusCode/100 != 2 {
				return fmt.Errorf("healthcheck %s: HTTP %d: %s", args[0], res.StatusCode, line)
			}
			fmt.Fprintln(a.stdout, line)
			return nil
		},
	}
}
