package heal

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"
)

// The heal lease keeps two engines on one lake (two processes, two cron
// runs that overlap) from repairing the same gaps twice. It is a chain of
// create-only objects lease/<dataset>/<generation>: whoever creates the
// next generation holds the lease until it expires or is released. A
// create-only put is a conditional write on every store (link(2) on disk,
// If-None-Match: * on S3), so two engines can never both take it.

type leaseRecord struct {
	Owner   string    `json:"owner"`
	Expires time.Time `json:"expires"` // zero: released
}

func newOwnerID() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// acquireLease takes the lease for this engine. It reports false, and who
// holds it, when another live engine does.
func (e *Engine) acquireLease(ctx context.Context) (gen int64, ok bool, holder string, err error) {
	return e.acquireLeaseAt(ctx, e.leasePrefix())
}

// acquireLeaseAt takes the lease whose generations live under prefix.
func (e *Engine) acquireLeaseAt(ctx context.Context, prefix string) (gen int64, ok bool, holder string, err error) {
	all, err := e.meta.ListMeta(ctx, prefix)
	if err != nil {
		return 0, false, "", fmt.Errorf("heal: lease: %w", err)
	}
	names := all[:0:0]
	for _, n := range all { // the shard leases live below the dataset's
		if !strings.Contains(strings.TrimPrefix(n, prefix), "/") {
			names = append(names, n)
		}
	}
	now := e.clock.Now()
	if n := len(names); n > 0 {
		last := names[n-1]
		gen, _ = strconv.ParseInt(strings.TrimSuffix(strings.TrimPrefix(last, prefix), ".json"), 10, 64)
		b, err := e.meta.GetMeta(ctx, last)
		if err != nil && !errors.Is(err, ErrNotFound) {
			return 0, false, "", fmt.Errorf("heal: lease: %w", err)
		}
		var rec leaseRecord
		if err == nil {
			if json.Unmarshal(b, &rec) != nil {
				rec = leaseRecord{} // unreadable: treat as released
			}
		}
		if rec.Owner != e.id && now.Before(rec.Expires) {
			return 0, false, rec.Owner, nil
		}
		for _, old := range names[:max(0, n-3)] { // keep a short tail for debugging
			_ = e.meta.DeleteMeta(ctx, old)
		}
	}
	gen++
	if err := e.putLease(ctx, prefix, gen, leaseRecord{Owner: e.id, Expires: now.Add(e.opts.LeaseTTL)}); err != nil {
		if errors.Is(err, ErrExist) {
			return 0, false, "another engine", nil // lost the race for this generation
		}
		return 0, false, "", err
	}
	return gen, true, e.id, nil
}

// releaseLease ends this engine's lease so the next cycle need not wait
// for it to expire. It works even if ctx has ended.
func (e *Engine) releaseLease(ctx context.Context, gen int64) {
	e.releaseLeaseAt(ctx, e.leasePrefix(), gen)
}

func (e *Engine) releaseLeaseAt(ctx context.Context, prefix string, gen int64) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	if err := e.putLease(ctx, prefix, gen+1, leaseRecord{Owner: e.id}); err != nil && !errors.Is(err, ErrExist) {
		e.log.Warn("could not release the heal lease; it expires by itself", "err", err)
	}
}

func (e *Engine) putLease(ctx context.Context, prefix string, gen int64, rec leaseRecord) error {
	b, err := json.Marshal(rec)
	if err != nil {
		return err
	}
	return e.meta.PutMeta(ctx, fmt.Sprintf("%s%020d.json", prefix, gen), b)
}

// heldLease is the heal lease while a cycle holds it. The cycle calls
// renew at its checkpoints (after each repair job, between phases): once a
// third of LeaseTTL has passed since the last renewal it creates the next
// generation, create-only like taking the lease, with a fresh expiry. So a
// cycle that runs for hours keeps its lease, and one that dies lets it
// expire. Finding the next generation taken means the lease expired
// between two checkpoints and another engine took it: renew then returns
// ErrLeaseLost and the cycle stops.
type heldLease struct {
	e       *Engine
	prefix  string
	mu      sync.Mutex
	gen     int64
	renewed time.Time
	lost    error
}

func (e *Engine) holdLease(prefix string, gen int64) *heldLease {
	return &heldLease{e: e, prefix: prefix, gen: gen, renewed: e.clock.Now()}
}

// renew extends the lease when it is due; see heldLease.
func (h *heldLease) renew(ctx context.Context) error {
	if h == nil {
		return nil
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.lost != nil {
		return h.lost
	}
	now := h.e.clock.Now()
	if now.Sub(h.renewed) < h.e.opts.LeaseTTL/3 {
		return nil
	}
	err := h.e.putLease(ctx, h.prefix, h.gen+1, leaseRecord{Owner: h.e.id, Expires: now.Add(h.e.opts.LeaseTTL)})
	switch {
	case errors.Is(err, ErrExist):
		h.lost = fmt.Errorf("%w (generation %d was taken after %s without renewal)", ErrLeaseLost, h.gen+1, now.Sub(h.renewed).Round(time.Second))
		h.e.log.Error("the heal lease was taken by another engine; stopping the cycle", "err", h.lost)
		return h.lost
	case err != nil:
		// Tried again at the next checkpoint; the lease still holds until
		// it expires.
		h.e.log.Warn("could not renew the heal lease", "err", err)
		return nil
	}
	h.gen++
	h.renewed = now
	_ = h.e.meta.DeleteMeta(ctx, fmt.Sprintf("%s%020d.json", h.prefix, h.gen-3)) // keep a short tail
	return nil
}

// release ends the lease at its current generation.
func (h *heldLease) release(ctx context.Context) {
	h.mu.Lock()
	gen, lost := h.gen, h.lost
	h.mu.Unlock()
	if lost == nil {
		h.e.releaseLeaseAt(ctx, h.prefix, gen)
	}
}
