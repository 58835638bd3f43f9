package heal

import "context"

// StageAudit is the stage of reading the lake's inventory and the ledger to
// find gaps. It raises no alarms; [StageOf] reports it.
const StageAudit Stage = "audit"

type stageKey struct{}

// StageOf reports the stage of the cycle on whose behalf a call is made: the
// engine puts it in the ctx it passes to Source.Fetch, to the Lake (and so
// to a sink.Store) and to Transformer.Derive, so that cost accounting and
// metrics can tell the live path (StageAcquire) from the audit, the repair,
// resynthesis and compaction. It returns "" for a ctx the engine did not
// make.
func StageOf(ctx context.Context) Stage {
	s, _ := ctx.Value(stageKey{}).(Stage)
	return s
}

func withStage(ctx context.Context, s Stage) context.Context {
	return context.WithValue(ctx, stageKey{}, s)
}
