// Package examples holds the sample assignment file, embedded so that
// `bulkassign run --simulate` works with no file at hand.
package examples

import _ "embed"

// Assignments is examples/assignments.csv: a small file with the common
// cases (add, replace, mixed case and padding, a duplicate, bad rows).
//
//go:embed assignments.csv
var Assignments []byte

// AssignmentsName is the name the sample is shown under.
const AssignmentsName = "examples/assignments.csv"
