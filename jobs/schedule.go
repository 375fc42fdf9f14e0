package jobs

import (
	"encoding/json"
	"fmt"

	"github.com/hibiken/asynq"
)

// TypePlan is the asynq task type of one tick of a schedule: plan the
// schedule's contacts by its rules and queue the result as a batch.
const TypePlan = "bulkassign:plan"

// PlanRetries is asynq's retry budget of a TypePlan task: a tick whose
// files cannot be read or planned is not retried at all (SkipRetry); these
// retries are for Redis trouble while it imports.
const PlanRetries = 3

// PlanPayload is the payload of a TypePlan task. It names the files, it
// does not carry them: the worker that runs the tick reads them, so every
// worker must see the same paths (a shared volume, or the same image).
type PlanPayload struct {
	// Name is the schedule's name; the batch is named "<Name> <tick>".
	Name string `json:"n"`
	// Contacts and Rules are the paths of the plan's input files.
	Contacts string `json:"c"`
	Rules    string `json:"r"`
	// Timezone is the IANA zone the tick is shown in; "" is UTC.
	Timezone string `json:"tz,omitempty"`
	// IDFormat is the rule the files' ids must follow, the scheduler's
	// --id-format; "" (a task queued before there was a choice) is IDUUID.
	IDFormat IDFormat `json:"id,omitempty"`
	// Live reads the contacts' current agents from the CRM before
	// planning, instead of trusting the contacts file's.
	Live bool `json:"live,omitempty"`
	// RecordPrevious makes the batch record each contact's agents before
	// its change, so that its report has a rollback.csv.
	RecordPrevious bool `json:"rp,omitempty"`
	// Notify is the URL each tick's batch announces its end to (package
	// notify), and where a tick held up by a paused batch is announced;
	// NotifyFormat is json or slack ("" is json). The signing secret is
	// not here: the workers that send the notices have it.
	Notify       string `json:"notify,omitempty"`
	NotifyFormat string `json:"nf,omitempty"`
}

// NewPlanTask builds the task of a schedule's tick. opts come after the
// defaults (queue Queue, PlanRetries) and override them.
func NewPlanTask(p PlanPayload, opts ...asynq.Option) (*asynq.Task, error) {
	b, err := json.Marshal(p)
	if err != nil {
		return nil, fmt.Errorf("encode plan payload of schedule %s: %w", p.Name, err)
	}
	opts = append([]asynq.Option{asynq.Queue(Queue), asynq.MaxRetry(PlanRetries)}, opts...)
	return asynq.NewTask(TypePlan, b, opts...), nil
}

// ParsePlanPayload decodes a TypePlan payload.
func ParsePlanPayload(b []byte) (PlanPayload, error) {
	var p PlanPayload
	if err := json.Unmarshal(b, &p); err != nil {
		return p, fmt.Errorf("decode plan payload: %w", err)
	}
	if p.Name == "" || p.Contacts == "" || p.Rules == "" {
		return p, fmt.Errorf("decode plan payload: want a name, a contacts file and a rules file")
	}
	return p, nil
}
