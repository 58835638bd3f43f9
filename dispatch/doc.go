// Package dispatch distributes an engine's work through Amazon SQS: an
// engine with a [Queue] as its heal.Options.Dispatcher sends the jobs it
// plans (live ticks, repairs, resynthesis) to a queue, and any number of
// [Worker]s, or an SQS-triggered Lambda calling [HandleSQSEvent], take
// them and run each with [heal.Engine.RunJob]. There is no coordinator:
// SQS holds the work, the lake holds the data and the ledger.
//
// # Delivery
//
// Delivery is at least once and the jobs are idempotent (see [heal.Job]),
// so every failure mode ends in a job run again:
//
//   - A worker deletes a message only after RunJob returned, that is after
//     the job's rows and ledger records are committed to the lake.
//   - While a job runs, the worker extends the message's visibility timeout
//     every third of it, so a long job is not handed to a second worker.
//   - A worker that dies mid-job (SIGKILL, a lost machine) stops extending:
//     the message becomes visible again when its timeout ends and another
//     worker runs it from the start.
//   - A job that fails is left on the queue, visible again at once, or
//     after the visibility timeout if the worker could not say so.
//   - A job received more than MaxReceives times, or that can never succeed
//     (a malformed job, another dataset's, a version this release does not
//     read: [heal.IsPermanent]), is dead: the worker raises one
//     [heal.Alarm] per key with the job's window and StageJob, sends the
//     message to the dead-letter queue if one is configured, and deletes
//     it. The next audit plans again whatever the dead job left missing.
//
// The receive count is checked by the worker, from SQS's
// ApproximateReceiveCount, so the dead-letter behaviour and its alarm work
// on any SQS-compatible server. A RedrivePolicy on the queue with a
// maxReceiveCount above MaxReceives is a useful backstop, not required.
//
// # Lambda
//
// [HandleSQSEvent] decodes the JSON event of an SQS-triggered Lambda and
// runs its jobs, returning the partial batch response (report batch item
// failures) so that only the failed messages return to the queue. The
// scheduled side is [heal.Engine.Heal] with a [Queue] as dispatcher. No
// Lambda runtime library is needed; see the README for the wiring.
package dispatch
