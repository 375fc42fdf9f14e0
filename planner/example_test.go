package planner_test

import (
	"fmt"
	"os"
	"strings"

	"github.com/bulkassign/bulkassign/jobs"
	"github.com/bulkassign/bulkassign/planner"
)

func Example() {
	rules, err := planner.ParseRules(strings.NewReader(`
rules:
  - name: north
    match: {region: north}
    pool:
      - {member: m-ana, weight: 2}
      - {member: m-ben}
fallback: m-triage
`), "territories.yaml", jobs.IDAny) // this CRM's ids are not UUIDs: --id-format any
	if err != nil {
		fmt.Println(err)
		return
	}
	contacts, err := planner.ReadContacts(strings.NewReader(`contactId,region,owner
c-1,north,m-ana
c-2,north,m-ana
c-3,north,m-ana
c-4,north,m-ana
c-5,west,m-ana
c-6,north,
`), "contacts.csv", jobs.IDAny)
	if err != nil {
		fmt.Println(err)
		return
	}
	plan, err := planner.Compute(rules, contacts)
	if err != nil {
		fmt.Println(err)
		return
	}
	if err := plan.WriteCSV(os.Stdout); err != nil {
		fmt.Println(err)
	}
	// Output:
	// aiContactId,teamMemberId,removeExistingAgents,rule,previousAgent,reason
	// c-4,m-ben,true,north,m-ana,rebalance
	// c-5,m-triage,true,,m-ana,no-rule
	// c-6,m-ben,true,north,,new
}
