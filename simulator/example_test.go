package simulator_test

import (
	"context"
	"fmt"
	"net/http"
	"time"

	"github.com/bulkassign/bulkassign/simulator"
)

func Example() {
	sim := simulator.New(simulator.Options{APIKey: "demo-key"})
	url, stop, err := simulator.Start(context.Background(), "127.0.0.1:0", sim)
	if err != nil {
		panic(err)
	}
	defer stop(context.Background())

	client := &http.Client{Timeout: 5 * time.Second}
	for _, path := range []string{
		"/api/public/contact/C-1/assign-team-member/alice",
		"/api/public/contact/C-1/assign-team-member/bob?removeExistingAgents=true",
		"/api/public/contact/C-1/assign-team-member/carol",
	} {
		req, _ := http.NewRequest(http.MethodPost, url+path, nil)
		req.Header.Set("x-api-key", "demo-key")
		resp, err := client.Do(req)
		if err != nil {
			panic(err)
		}
		resp.Body.Close()
		fmt.Println(resp.StatusCode)
	}
	fmt.Println(sim.Agents("c-1"))
	// Output:
	// 200
	// 200
	// 200
	// [bob carol]
}
